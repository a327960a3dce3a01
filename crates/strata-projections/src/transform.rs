//! A transform: a JavaScript function mapping one event to one message, run in the same
//! sandbox as projections (QuickJS-ng, no I/O, no code from strings, a deadline per call, a
//! memory and a stack limit). Connectors use it to reshape events before they publish them.
//!
//! The source evaluates to a function (`(event) => ({ ... })`) or defines
//! `function transform(event) { ... }`. The function gets the event as JSON (`id`, `stream`,
//! `revision`, `position`, `type`, `contentType`, `created`, `data` or `dataBase64`,
//! `metadata` or `metadataBase64`) and returns `null`/`undefined` (skip the event) or an
//! object whose `type`, `data`/`dataBase64` and `metadata`/`metadataBase64` replace the
//! event's; the other fields are ignored (the id, stream and position never change).

use std::rc::Rc;

use rquickjs::{CatchResultExt, Context, Function, Persistent, Runtime};

use crate::engine::SandboxLimits;
use crate::error::Fault;
use crate::quickjs::{Deadline, classify, describe, eval_prelude};

/// Calls the user's function on the parsed event and hands back JSON (or null to skip).
const APPLY: &str = r#"(function () {
  "use strict";
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const isArray = Array.isArray;
  return function apply(transform, json) {
    const result = transform(parse(json));
    if (result === null || result === undefined) return null;
    if (typeof result !== "object" || isArray(result)) {
      throw new TypeError("a transform returns an object, null or undefined, not " +
        (isArray(result) ? "an array" : typeof result));
    }
    return stringify(result);
  };
})()"#;

/// A compiled transform in its own QuickJS runtime. Not `Send`: keep it on one thread.
pub struct QuickJsTransform {
    // Field order is drop order: the functions go before their context and runtime.
    apply: Persistent<Function<'static>>,
    transform: Persistent<Function<'static>>,
    context: Context,
    runtime: Runtime,
    deadline: Rc<Deadline>,
    limits: SandboxLimits,
}

impl QuickJsTransform {
    /// Compiles `source` under `limits` (the compile deadline covers running it once).
    ///
    /// # Errors
    /// [`Fault::Syntax`] for a syntax error, [`Fault::InvalidQuery`] when the source gives no
    /// function, other faults for an exception or a broken limit while it runs.
    pub fn compile(source: &str, limits: SandboxLimits) -> Result<Self, Fault> {
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
        deadline.arm(limits.compile_deadline);
        let compiled = context.with(|ctx| {
            let setup = |stage: &str, script: &str| {
                ctx.eval::<rquickjs::Value, _>(script)
                    .catch(&ctx)
                    .map_err(|caught| (stage.to_owned(), describe(&caught)))
            };
            eval_prelude::<rquickjs::Value>(&ctx, &deadline)
                .catch(&ctx)
                .map_err(|caught| ("the sandbox prelude".to_owned(), describe(&caught)))?;
            let apply = setup("the transform wrapper", APPLY)?;
            let value = setup("the transform", source)?;
            let transform = match value.into_function() {
                Some(function) => Some(function),
                None => ctx
                    .globals()
                    .get::<_, Option<Function>>("transform")
                    .ok()
                    .flatten(),
            };
            let Some(transform) = transform else {
                return Ok(None);
            };
            let apply = apply.into_function().expect("the wrapper is a function");
            Ok(Some((
                Persistent::save(&ctx, apply),
                Persistent::save(&ctx, transform),
            )))
        });
        let fired = deadline.disarm();
        let (apply, transform) = match compiled {
            Ok(Some(functions)) => functions,
            Ok(None) => {
                return Err(Fault::InvalidQuery {
                    reason: "a transform evaluates to a function, or defines \
                             `function transform(event)`"
                        .into(),
                });
            }
            Err((stage, _)) if fired => {
                return Err(Fault::Deadline {
                    stage,
                    deadline_ms: limits.compile_deadline.as_millis(),
                });
            }
            Err((stage, (name, message))) => {
                return Err(classify(&runtime, &limits, &stage, true, &name, message));
            }
        };
        Ok(Self {
            apply,
            transform,
            context,
            runtime,
            deadline,
            limits,
        })
    }

    /// Runs the transform on one event given as JSON; `None` when it skips the event, else
    /// the returned object as JSON.
    ///
    /// # Errors
    /// A [`Fault`] when the function throws, returns something other than an object, null
    /// or undefined, or breaks a limit. After a fault other than [`Fault::Exception`] the
    /// transform should be compiled again.
    pub fn apply(&self, event_json: &str) -> Result<Option<String>, Fault> {
        let stage = "the transform";
        self.deadline.arm(self.limits.handler_deadline);
        let outcome = self.context.with(|ctx| {
            let apply = self.apply.clone().restore(&ctx)?;
            let transform = self.transform.clone().restore(&ctx)?;
            Ok(apply
                .call::<_, Option<String>>((transform, event_json))
                .catch(&ctx)
                .map_err(|caught| describe(&caught)))
        });
        let fired = self.deadline.disarm();
        let outcome = outcome.map_err(|error: rquickjs::Error| (String::new(), error.to_string()));
        match outcome.and_then(|inner| inner) {
            Ok(value) => Ok(value),
            Err(_) if fired => Err(Fault::Deadline {
                stage: stage.into(),
                deadline_ms: self.limits.handler_deadline.as_millis(),
            }),
            Err((name, message)) => Err(classify(
                &self.runtime,
                &self.limits,
                stage,
                false,
                &name,
                message,
            )),
        }
    }
}
