//! [`ProjectionEngine`] on QuickJS-ng (through `rquickjs`): one runtime per projection, so
//! the memory limit, the stack limit and the deadline interrupt are the projection's own.
//!
//! The sandbox: QuickJS has no I/O of its own (no `std`/`os` modules are added, no module
//! loader is set); the prelude replaces `eval`, `Function` and every function kind's
//! `constructor` with functions that throw before the query runs, so no code is made from
//! strings (the query itself is compiled by the host). An interrupt handler ends any call
//! that passes its deadline; the error QuickJS raises for it cannot be caught by the query.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::function::Args;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Object, Persistent, Runtime};

use crate::engine::{
    EmittedEvent, EngineFactory, EventView, ProjectionEngine, QueryDefinition, SandboxLimits,
};
use crate::error::Fault;

const PRELUDE: &str = include_str!("prelude.js");

/// The QuickJS-ng engine factory.
#[derive(Clone, Copy, Debug, Default)]
pub struct QuickJsEngine;

impl EngineFactory for QuickJsEngine {
    fn compile(
        &self,
        query: &str,
        limits: SandboxLimits,
    ) -> Result<Box<dyn ProjectionEngine>, Fault> {
        Ok(Box::new(QuickJsProjection::compile(query, limits)?))
    }
}

/// Evaluates the prelude in `ctx`, with the deadline check its guarded built-ins call.
pub(crate) fn eval_prelude<'js, T: rquickjs::FromJs<'js>>(
    ctx: &Ctx<'js>,
    deadline: &Rc<Deadline>,
) -> rquickjs::Result<T> {
    let passed = Rc::clone(deadline);
    let check = Function::new(ctx.clone(), move || passed.passed())?;
    ctx.globals().set("__strataDeadlinePassed", check)?;
    ctx.eval(PRELUDE)
}

/// When the running call must stop, and whether the interrupt stopped it.
#[derive(Default)]
pub(crate) struct Deadline {
    until: Cell<Option<Instant>>,
    fired: Cell<bool>,
}

impl Deadline {
    pub(crate) fn arm(&self, after: Duration) {
        self.fired.set(false);
        self.until.set(Some(Instant::now() + after));
    }

    pub(crate) fn disarm(&self) -> bool {
        self.until.set(None);
        self.fired.replace(false)
    }

    pub(crate) fn passed(&self) -> bool {
        let passed = self
            .until
            .get()
            .is_some_and(|until| Instant::now() >= until);
        if passed {
            self.fired.set(true);
        }
        passed
    }
}

/// A compiled query in its own QuickJS runtime.
pub(crate) struct QuickJsProjection {
    // Field order is drop order: the host object and its functions go before their context
    // and runtime.
    host: Persistent<Object<'static>>,
    /// The host's per-event functions, looked up once.
    process_fn: Persistent<Function<'static>>,
    partition_fn: Persistent<Function<'static>>,
    created_fn: Persistent<Function<'static>>,
    /// The last JavaScript strings made for the event fields that repeat (stream, type,
    /// category, time), reused while the text is the same.
    strings: RefCell<[CachedString; 4]>,
    context: Context,
    runtime: Runtime,
    deadline: Rc<Deadline>,
    limits: SandboxLimits,
    definition: QueryDefinition,
}

impl QuickJsProjection {
    pub(crate) fn compile(query: &str, limits: SandboxLimits) -> Result<Self, Fault> {
        let engine_error = |error: rquickjs::Error| Fault::Exception {
            stage: "engine setup".into(),
            message: error.to_string(),
        };
        let runtime = Runtime::new().map_err(engine_error)?;
        runtime.set_memory_limit(limits.memory_bytes_max);
        runtime.set_max_stack_size(limits.stack_bytes_max);
        let deadline = Rc::new(Deadline::default());
        let interrupt = Rc::clone(&deadline);
        runtime.set_interrupt_handler(Some(Box::new(move || interrupt.passed())));
        let context = Context::full(&runtime).map_err(engine_error)?;
        let (host, process_fn, partition_fn, created_fn) = context
            .with(|ctx| {
                let prelude_fault = |message: String| Fault::Exception {
                    stage: "prelude".into(),
                    message,
                };
                let host: Object = eval_prelude(&ctx, &deadline)
                    .catch(&ctx)
                    .map_err(|caught| prelude_fault(caught.to_string()))?;
                let function = |name: &str| {
                    host.get::<_, Function>(name)
                        .map(|function| Persistent::save(&ctx, function))
                        .map_err(|error| prelude_fault(error.to_string()))
                };
                Ok::<_, Fault>((
                    function("process")?,
                    function("partitionOf")?,
                    function("created")?,
                    Persistent::save(&ctx, host),
                ))
            })
            .map(|(process, partition, created, host)| (host, process, partition, created))?;
        let mut projection = Self {
            host,
            process_fn,
            partition_fn,
            created_fn,
            strings: RefCell::default(),
            context,
            runtime,
            deadline,
            limits,
            definition: QueryDefinition::default(),
        };
        let definition_json: String =
            projection.run("the query definition", true, |ctx, host| {
                ctx.eval::<(), _>(query)?;
                host.get::<_, rquickjs::Function>("finishDefinition")?
                    .call(())
            })?;
        projection.definition =
            serde_json::from_str(&definition_json).map_err(|error| Fault::InvalidQuery {
                reason: format!("its definition does not read back: {error}"),
            })?;
        Ok(projection)
    }

    /// Runs `call` on the host object under the deadline of `stage`, turning every way it can
    /// fail into a [`Fault`].
    /// `stage` is formatted only when the call fails (a handler's name costs nothing per
    /// event).
    fn run<T, S: std::fmt::Display + ?Sized>(
        &self,
        stage: &S,
        compiling: bool,
        call: impl for<'js> FnOnce(&Ctx<'js>, Object<'js>) -> rquickjs::Result<T>,
    ) -> Result<T, Fault> {
        let limit = if compiling {
            self.limits.compile_deadline
        } else {
            self.limits.handler_deadline
        };
        self.deadline.arm(limit);
        let outcome = self.context.with(|ctx| {
            let host = self.host.clone().restore(&ctx)?;
            Ok(call(&ctx, host)
                .catch(&ctx)
                .map_err(|caught| describe(&caught)))
        });
        let fired = self.deadline.disarm();
        let outcome = outcome.map_err(|error: rquickjs::Error| (String::new(), error.to_string()));
        match outcome.and_then(|inner| inner) {
            Ok(value) => Ok(value),
            Err(_) if fired => Err(Fault::Deadline {
                stage: stage.to_string(),
                deadline_ms: limit.as_millis(),
            }),
            Err((name, message)) => Err(classify(
                &self.runtime,
                &self.limits,
                &stage.to_string(),
                compiling,
                &name,
                message,
            )),
        }
    }

    fn check_size(&self, partition: &str, json: Option<String>) -> Result<Option<String>, Fault> {
        match json {
            Some(json) if json.len() > self.limits.state_bytes_max => Err(Fault::StateTooLarge {
                partition: partition.to_owned(),
                size_bytes: json.len(),
                limit_bytes: self.limits.state_bytes_max,
            }),
            other => Ok(other),
        }
    }

    fn emits(&self, json: Option<String>) -> Result<Vec<EmittedEvent>, Fault> {
        let Some(json) = json else {
            return Ok(Vec::new());
        };
        serde_json::from_str(&json).map_err(|error| Fault::InvalidQuery {
            reason: format!("emitted events do not read back: {error}"),
        })
    }
}

/// What a failed call was: out of memory, too deep, a syntax error, or a plain exception.
pub(crate) fn classify(
    runtime: &Runtime,
    limits: &SandboxLimits,
    stage: &str,
    compiling: bool,
    name: &str,
    message: String,
) -> Fault {
    let lower = message.to_ascii_lowercase();
    let near_memory_limit =
        runtime.memory_usage().malloc_size as usize >= limits.memory_bytes_max / 10 * 9;
    if lower.contains("out of memory") || (name.is_empty() && near_memory_limit) {
        Fault::Memory {
            stage: stage.to_owned(),
            limit_bytes: limits.memory_bytes_max,
        }
    } else if lower.contains("stack overflow") || lower.contains("call stack size") {
        Fault::Stack {
            stage: stage.to_owned(),
            limit_bytes: limits.stack_bytes_max,
        }
    } else if compiling && name == "SyntaxError" {
        Fault::Syntax { message }
    } else {
        Fault::Exception {
            stage: stage.to_owned(),
            message,
        }
    }
}

/// The exception's name (`SyntaxError`, ...) and a message with its stack when it has one.
pub(crate) fn describe(caught: &CaughtError<'_>) -> (String, String) {
    match caught {
        CaughtError::Exception(exception) => {
            let name = exception
                .get::<_, Option<String>>("name")
                .ok()
                .flatten()
                .unwrap_or_default();
            let message = exception.message().unwrap_or_default();
            let text = match exception.stack().filter(|stack| !stack.trim().is_empty()) {
                Some(stack) => format!("{name}: {message}\n{}", stack.trim_end()),
                None => format!("{name}: {message}"),
            };
            (name, text)
        }
        CaughtError::Value(value) => {
            let text = value
                .as_string()
                .and_then(|text| text.to_string().ok())
                .unwrap_or_else(|| format!("{value:?}"));
            (String::new(), format!("uncaught value {text}"))
        }
        CaughtError::Error(error) => (String::new(), error.to_string()),
    }
}

/// A field's last text and the JavaScript string made for it.
#[derive(Default)]
struct CachedString {
    text: String,
    value: Option<Persistent<rquickjs::String<'static>>>,
}

impl CachedString {
    /// The JavaScript string of `text`: the one made last time when the text is the same.
    fn get<'js>(&mut self, ctx: &Ctx<'js>, text: &str) -> rquickjs::Result<rquickjs::String<'js>> {
        if let Some(value) = &self.value
            && self.text == text
        {
            return value.clone().restore(ctx);
        }
        let value = rquickjs::String::from_str(ctx.clone(), text)?;
        self.text.clear();
        self.text.push_str(text);
        self.value = Some(Persistent::save(ctx, value.clone()));
        Ok(value)
    }
}

/// Calls a per-event host function with the partition and the event's fields, as
/// arguments in the order the prelude's `envelope` takes them (no array in between).
fn call_with_event<'js, R: rquickjs::FromJs<'js>>(
    ctx: &Ctx<'js>,
    function: &Persistent<Function<'static>>,
    strings: &RefCell<[CachedString; 4]>,
    partition: &str,
    event: &EventView,
) -> rquickjs::Result<R> {
    let function = function.clone().restore(ctx)?;
    let [stream, event_type, category, created] = &mut *strings.borrow_mut();
    let mut args = Args::new(ctx.clone(), 11);
    args.push_arg(partition)?;
    args.push_arg(event.body_raw.as_str())?;
    args.push_arg(event.is_json)?;
    args.push_arg(event.metadata_raw.as_str())?;
    args.push_arg(event.link_metadata_raw.as_str())?;
    args.push_arg(stream.get(ctx, &event.stream_id)?)?;
    args.push_arg(event_type.get(ctx, &event.event_type)?)?;
    // Revisions stay far below 2^53: a JavaScript number holds them exactly.
    args.push_arg(event.sequence_number as f64)?;
    args.push_arg(event.event_id.as_str())?;
    args.push_arg(category.get(ctx, &event.category)?)?;
    args.push_arg(created.get(ctx, &event.created)?)?;
    function.call_arg(args)
}

/// "the handler of <type>", for a fault's message.
struct HandlerOf<'a>(&'a str);

impl std::fmt::Display for HandlerOf<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "the handler of {}", self.0)
    }
}

fn method<'js>(host: &Object<'js>, name: &str) -> rquickjs::Result<rquickjs::Function<'js>> {
    host.get(name)
}

impl ProjectionEngine for QuickJsProjection {
    fn definition(&self) -> &QueryDefinition {
        &self.definition
    }

    fn load_state(&mut self, partition: &str, state: Option<&str>) -> Result<(), Fault> {
        self.run("$init", false, |_, host| {
            method(&host, "loadState")?.call((partition, state))
        })
    }

    fn stream_matches(&mut self, stream: &str) -> Result<bool, Fault> {
        self.run("fromStreamsMatching", false, |_, host| {
            method(&host, "streamMatches")?.call((stream,))
        })
    }

    fn unload_state(&mut self, partition: &str) -> Result<(), Fault> {
        self.run("evicting a partition", false, |_, host| {
            method(&host, "unloadState")?.call((partition,))
        })
    }

    fn load_shared(&mut self, state: Option<&str>) -> Result<(), Fault> {
        self.run("$initShared", false, |_, host| {
            method(&host, "loadShared")?.call((state,))
        })
    }

    fn partition_of(&mut self, event: &EventView) -> Result<Option<String>, Fault> {
        self.run("partitionBy", false, |ctx, _| {
            call_with_event(ctx, &self.partition_fn, &self.strings, "", event)
        })
    }

    fn process(&mut self, partition: &str, event: &EventView) -> Result<Vec<EmittedEvent>, Fault> {
        let stage = HandlerOf(&event.event_type);
        let emitted: Option<String> = self.run(&stage, false, |ctx, _| {
            call_with_event(ctx, &self.process_fn, &self.strings, partition, event)
        })?;
        self.emits(emitted)
    }

    fn created(&mut self, partition: &str, event: &EventView) -> Result<Vec<EmittedEvent>, Fault> {
        let emitted: Option<String> = self.run("$created", false, |ctx, _| {
            call_with_event(ctx, &self.created_fn, &self.strings, partition, event)
        })?;
        self.emits(emitted)
    }

    fn deleted(&mut self, partition: &str, soft: bool) -> Result<Vec<EmittedEvent>, Fault> {
        let emitted: Option<String> = self.run("$deleted", false, |_, host| {
            method(&host, "deleted")?.call((partition, soft))
        })?;
        self.emits(emitted)
    }

    fn state(&mut self, partition: &str) -> Result<Option<String>, Fault> {
        let json = self.run("serializing the state", false, |_, host| {
            method(&host, "stateJson")?.call((partition,))
        })?;
        self.check_size(partition, json)
    }

    fn shared_state(&mut self) -> Result<Option<String>, Fault> {
        let json = self.run("serializing the shared state", false, |_, host| {
            method(&host, "sharedJson")?.call(())
        })?;
        self.check_size("(shared)", json)
    }

    fn result(&mut self, partition: &str) -> Result<Option<String>, Fault> {
        let json = self.run("transformBy/filterBy", false, |_, host| {
            method(&host, "resultJson")?.call((partition,))
        })?;
        self.check_size(partition, json)
    }

    fn take_logs(&mut self) -> Vec<String> {
        self.run("log", false, |_, host| method(&host, "takeLogs")?.call(()))
            .unwrap_or_default()
    }
}
