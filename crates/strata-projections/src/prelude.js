// Strata's projection prelude: KurrentDB's projection API in plain JavaScript.
// Evaluated before the query. The value of this script is the host object the runner calls;
// the query only reaches the globals defined here. Behaviour follows the reference server's
// Jint handler (KurrentDB.Projections.Core, JintProjectionStateHandler).
(function (global) {
  "use strict";
  // Kept before the query runs: the query may replace the globals, never these.
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const defineProperty = Object.defineProperty;
  const ownKeys = Object.keys;
  const isArray = Array.isArray;

  // No code from strings: `eval`, `Function(...)` and the constructors reachable through
  // any function's `.constructor` all throw. Compilation of the query itself happens
  // through the host, not through these.
  const refuse = function () {
    throw new EvalError("code generation from strings is disabled in projections");
  };
  const functionKinds = [
    function () {},
    async function () {},
    function* () {},
    async function* () {},
  ];
  for (const kind of functionKinds) {
    const prototype = Object.getPrototypeOf(kind);
    defineProperty(prototype, "constructor", {
      value: refuse, writable: false, enumerable: false, configurable: false,
    });
  }
  const TamedFunction = function Function() { refuse(); };
  TamedFunction.prototype = Object.getPrototypeOf(functionKinds[0]);
  defineProperty(global, "Function", {
    value: TamedFunction, writable: false, enumerable: false, configurable: false,
  });
  defineProperty(global, "eval", {
    value: refuse, writable: false, enumerable: false, configurable: false,
  });

  // Native built-ins do not run QuickJS's interrupt check (it runs once every 10,000
  // backward jumps), so a loop of costly native calls — `new Array(n).fill(1)`, `join`,
  // `'x'.repeat(n)`, `indexOf` on a huge array — would run far past the deadline. The
  // costly ones check the deadline first, and a sort's comparator every 1,024 calls; once it
  // has passed, they throw at once, so the loop reaches the uncatchable interrupt quickly.
  // `deadlinePassed` is the host's (set before this script runs, removed here).
  const deadlinePassed = global.__strataDeadlinePassed;
  delete global.__strataDeadlinePassed;
  const apply = Reflect.apply;
  function overrun() {
    throw new RangeError("the deadline of this call has passed");
  }
  function guard(owner, names) {
    for (const name of names) {
      const original = owner[name];
      if (typeof original !== "function") continue;
      const guarded = {
        [name]() {
          if (deadlinePassed()) overrun();
          return apply(original, this, arguments);
        },
      }[name];
      defineProperty(owner, name, {
        value: guarded, writable: true, enumerable: false, configurable: true,
      });
    }
  }
  const COMPARES_PER_CHECK = 1024;
  function guardSort(owner, names) {
    for (const name of names) {
      const original = owner[name];
      if (typeof original !== "function") continue;
      const guarded = {
        [name](compare) {
          if (deadlinePassed()) overrun();
          if (typeof compare !== "function") return apply(original, this, arguments);
          let left = COMPARES_PER_CHECK;
          return apply(original, this, [function (a, b) {
            if (--left <= 0) {
              left = COMPARES_PER_CHECK;
              if (deadlinePassed()) overrun();
            }
            return compare(a, b);
          }]);
        },
      }[name];
      defineProperty(owner, name, {
        value: guarded, writable: true, enumerable: false, configurable: true,
      });
    }
  }
  const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype);
  guard(Array, ["from", "of"]);
  guard(Array.prototype, [
    "concat", "copyWithin", "fill", "flat", "includes", "indexOf", "join", "lastIndexOf",
    "reverse", "shift", "slice", "splice", "toLocaleString", "toReversed",
    "toSpliced", "toString", "unshift", "with",
  ]);
  guardSort(Array.prototype, ["sort", "toSorted"]);
  guard(typedArrayPrototype, [
    "copyWithin", "fill", "includes", "indexOf", "join", "lastIndexOf", "reverse", "set",
    "slice", "toLocaleString", "toReversed", "toString", "with",
  ]);
  guardSort(typedArrayPrototype, ["sort", "toSorted"]);
  guard(ArrayBuffer.prototype, ["slice", "resize"]);
  guard(String.prototype, [
    "concat", "endsWith", "includes", "indexOf",
    "lastIndexOf", "localeCompare", "match", "matchAll", "normalize", "padEnd", "padStart",
    "repeat", "replace", "replaceAll", "search", "slice", "split", "startsWith", "substr",
    "substring", "toLocaleLowerCase", "toLocaleUpperCase", "toLowerCase", "toUpperCase",
    "trim", "trimEnd", "trimStart",
  ]);
  guard(String, ["fromCharCode", "fromCodePoint"]);
  // Spreading (`[...a]`, `f(...a)`) and `apply` copy a whole array without a check.
  guard(Array.prototype, ["values", Symbol.iterator]);
  guard(typedArrayPrototype, ["values", Symbol.iterator]);
  guard(Function.prototype, ["apply"]);
  guard(Reflect, ["apply", "construct"]);
  guard(JSON, ["parse", "stringify"]);
  guard(Object, [
    "assign", "entries", "fromEntries", "getOwnPropertyNames", "keys", "values",
  ]);

  const definition = {
    all: false,
    streams: [],
    categories: [],
    events: [],
    any: false,
    byStream: false,
    byCustomPartitions: false,
    outputState: false,
    definesStateTransform: false,
    definesFold: false,
    biState: false,
    handlesDeletedNotifications: false,
    includeLinks: false,
    processingLag: null,
    streamsMatching: false,
    resultStreamName: null,
    partitionResultStreamNamePattern: null,
  };
  const handlers = Object.create(null);
  const createdHandlers = [];
  const transforms = [];
  let initHandler = null;
  let initSharedHandler = null;
  let anyHandler = null;
  // True once a handler of a named type is defined.
  let typedHandlers = false;
  let deletedHandler = null;
  let partitionFunction = null;
  let streamFilter = null;
  // True while a handler runs; its emits are collected in `emitted` (made on the first).
  let collecting = false;
  let emitted = null;
  const logs = [];
  const LOG_LINES_MAX = 100;
  const LOG_LINE_CHARS_MAX = 4096;

  const states = Object.create(null);
  let shared = undefined;

  function fail(message) {
    throw new Error(message);
  }

  function requireString(value, name) {
    if (typeof value === "string" && value.trim() !== "") return value;
    fail(`${name}: a non-empty string is expected`);
  }

  function requireObject(value, name) {
    if (value !== null && typeof value === "object") return value;
    fail(`${name}: an object is expected`);
  }

  function requireFunction(value, name) {
    if (typeof value === "function") return value;
    fail(`${name}: a function is expected`);
  }

  // The reference server matches option names without regard to case.
  const optionSetters = {
    "$includelinks": (value) => {
      if (typeof value !== "boolean") fail("$includeLinks: a boolean is expected");
      definition.includeLinks = value;
    },
    "reorderevents": (value) => {
      if (typeof value !== "boolean") fail("reorderEvents: a boolean is expected");
      if (value) fail("reorderEvents is not supported: Strata processes events in log order");
    },
    "processinglag": (value) => {
      if (typeof value !== "number") fail("processingLag: a number is expected");
      definition.processingLag = Math.trunc(value);
    },
    "resultstreamname": (value) => {
      definition.resultStreamName = requireString(value, "resultStreamName");
    },
    "bistate": (value) => {
      if (typeof value !== "boolean") fail("biState: a boolean is expected");
      definition.biState = value;
    },
  };

  function addHandler(name, handler) {
    switch (name) {
      case "$init": initHandler = handler; break;
      case "$initShared": definition.biState = true; initSharedHandler = handler; break;
      case "$any": anyHandler = handler; definition.any = true; break;
      case "$created": createdHandlers.push(handler); break;
      case "$deleted":
        if (definition.biState) fail("Cannot handle deletes in bi-state projections");
        definition.handlesDeletedNotifications = true;
        deletedHandler = handler;
        break;
      default:
        if (!(name in handlers)) definition.events.push(name);
        handlers[name] = handler;
        typedHandlers = true;
    }
  }

  const methods = {
    when(handlerObject) {
      if (handlerObject !== null && typeof handlerObject === "object") {
        for (const key of ownKeys(handlerObject)) {
          if (typeof handlerObject[key] === "function") addHandler(key, handlerObject[key]);
        }
      }
      definition.definesFold = true;
      return stage("when");
    },
    partitionBy(fn) {
      partitionFunction = requireFunction(fn, "partitionBy");
      definition.byCustomPartitions = true;
      return stage("partitionBy");
    },
    foreachStream() {
      definition.byStream = true;
      return stage("foreachStream");
    },
    outputState() {
      definition.outputState = true;
      return stage("outputState");
    },
    transformBy(fn) {
      transforms.push(["transform", requireFunction(fn, "transformBy")]);
      definition.definesStateTransform = true;
      definition.outputState = true;
      return stage("transformBy");
    },
    filterBy(fn) {
      transforms.push(["filter", requireFunction(fn, "filterBy")]);
      definition.definesStateTransform = true;
      definition.outputState = true;
      return stage("filterBy");
    },
    outputTo(resultStream, partitionResultStreamPattern) {
      if (arguments.length !== 1 && arguments.length !== 2) fail("outputTo: invalid number of parameters");
      if (typeof resultStream !== "string") fail("outputTo: resultStream: a string is expected");
      if (arguments.length === 2 && typeof partitionResultStreamPattern !== "string") {
        fail("outputTo: partitionResultStreamPattern: a string is expected");
      }
      definition.resultStreamName = resultStream;
      if (arguments.length === 2) definition.partitionResultStreamNamePattern = partitionResultStreamPattern;
      return stage("outputTo");
    },
    $defines_state_transform() {
      definition.definesStateTransform = true;
      definition.outputState = true;
    },
  };

  // Which calls may follow which, as in the reference server.
  const available = {
    fromStream: ["when", "partitionBy", "outputState"],
    fromStreams: ["when", "partitionBy", "outputState"],
    fromAll: ["when", "partitionBy", "outputState", "foreachStream"],
    fromCategory: ["when", "partitionBy", "outputState", "foreachStream"],
    when: ["transformBy", "filterBy", "outputState", "outputTo", "$defines_state_transform"],
    foreachStream: ["when"],
    fromStreamsMatching: ["when"],
    outputState: ["transformBy", "filterBy", "outputTo"],
    partitionBy: ["when"],
    transformBy: ["transformBy", "filterBy", "outputState", "outputTo"],
    filterBy: ["transformBy", "filterBy", "outputState", "outputTo"],
    outputTo: [],
  };

  function stage(name) {
    const next = {};
    for (const method of ownKeys(methods)) {
      next[method] = available[name].includes(method)
        ? methods[method]
        : () => fail(`${method}() cannot follow ${name}()`);
    }
    return next;
  }

  function stringsOf(args, name) {
    const list = args.length === 1 && isArray(args[0]) ? args[0] : Array.prototype.slice.call(args);
    for (const item of list) {
      if (typeof item !== "string") fail(`${name}: strings are expected`);
    }
    return list;
  }

  const definitionFunctions = {
    options(opts) {
      if (opts !== null && typeof opts === "object") {
        for (const key of ownKeys(opts)) {
          const setter = optionSetters[key.toLowerCase()];
          if (setter === undefined) fail(`Unrecognized option: ${key}`);
          setter(opts[key]);
        }
      }
    },
    fromAll() {
      definition.all = true;
      return stage("fromAll");
    },
    fromStream(stream) {
      if (typeof stream !== "string") fail("fromStream: a stream name is expected");
      definition.streams.push(stream);
      return stage("fromStream");
    },
    fromStreams() {
      for (const stream of stringsOf(arguments, "fromStreams")) definition.streams.push(stream);
      return stage("fromStreams");
    },
    fromCategory() {
      for (const category of stringsOf(arguments, "fromCategory")) definition.categories.push(category);
      return stage("fromCategory");
    },
    fromCategories() {
      for (const category of stringsOf(arguments, "fromCategories")) definition.categories.push(category);
      return stage("fromCategory");
    },
    // The reference's legacy selector: the streams of $all whose name the filter accepts,
    // one state per stream. (KurrentDB 24.2 removed it; Strata keeps it.)
    fromStreamsMatching(filter) {
      streamFilter = requireFunction(filter, "fromStreamsMatching");
      definition.all = true;
      definition.streamsMatching = true;
      definition.byStream = true;
      return stage("fromStreamsMatching");
    },
    on_event(eventName, handler) {
      if (typeof eventName !== "string") fail("on_event: eventName: a string is expected");
      addHandler(eventName, requireFunction(handler, "on_event"));
    },
    on_any(handler) {
      addHandler("$any", requireFunction(handler, "on_any"));
    },
  };
  for (const name of ownKeys(definitionFunctions)) {
    defineProperty(global, name, {
      value: definitionFunctions[name], writable: true, enumerable: false, configurable: true,
    });
  }

  function collect(entry) {
    if (!collecting) fail("emit, linkTo and copyTo may only be called from a handler");
    if (emitted === null) emitted = [];
    emitted.push(entry);
  }

  function metadataJson(metadata, name) {
    if (metadata === undefined) return null;
    return stringify(requireObject(metadata, name));
  }

  const outputFunctions = {
    emit(streamId, eventType, body, metadata) {
      if (arguments.length < 3) fail("emit: invalid number of parameters");
      collect({
        stream: requireString(streamId, "emit: streamId"),
        eventType: requireString(eventType, "emit: eventType"),
        data: stringify(requireObject(body, "emit: eventBody")),
        isJson: true,
        metadata: metadataJson(metadata, "emit: metadata"),
      });
    },
    linkTo(streamId, event, metadata) {
      if (arguments.length !== 2 && arguments.length !== 3) fail("linkTo: wrong number of parameters");
      const stream = requireString(streamId, "linkTo: streamId");
      requireObject(event, "linkTo: event");
      const number = event.sequenceNumber;
      const source = event.streamId;
      if (typeof number !== "number" || typeof source !== "string") {
        fail(`Invalid link to event ${number}@${source}`);
      }
      collect({
        stream, eventType: "$>", data: `${Math.trunc(number)}@${source}`, isJson: false,
        metadata: metadataJson(metadata, "linkTo: metadata"),
      });
    },
    linkStreamTo(streamId, linkedStreamId, metadata) {
      collect({
        stream: requireString(streamId, "linkStreamTo: streamId"),
        eventType: "$@",
        data: requireString(linkedStreamId, "linkStreamTo: linkedStreamId"),
        isJson: false,
        metadata: metadataJson(metadata, "linkStreamTo: metadata"),
      });
    },
    copyTo(streamId, event, metadata) {
      const stream = requireString(streamId, "copyTo: streamId");
      requireObject(event, "copyTo: event");
      collect({
        stream,
        eventType: requireString(event.eventType, "copyTo: event.eventType"),
        data: typeof event.bodyRaw === "string" ? event.bodyRaw : "",
        isJson: event.isJson === true,
        metadata: metadataJson(metadata, "copyTo: metadata"),
      });
    },
    log() {
      if (logs.length >= LOG_LINES_MAX) return;
      const parts = [];
      for (const value of arguments) {
        parts.push(value !== null && typeof value === "object" ? stringify(value) : String(value));
      }
      logs.push(parts.join(" ").slice(0, LOG_LINE_CHARS_MAX));
    },
  };
  for (const name of ownKeys(outputFunctions)) {
    defineProperty(global, name, {
      value: outputFunctions[name], writable: true, enumerable: false, configurable: true,
    });
  }

  // The event as handlers see it. `body`/`data`, `metadata` and `linkMetadata` are parsed on
  // first use.
  function parseOrNull(raw) {
    if (raw === null || raw === undefined || raw === "") return null;
    return parse(raw);
  }

  function cached(target, name, compute) {
    const value = compute();
    defineProperty(target, name, { value, writable: false, enumerable: true, configurable: true });
    return value;
  }

  const envelopePrototype = {
    get body() { return this.isJson ? cached(this, "body", () => parseOrNull(this.bodyRaw)) : undefined; },
    get data() { return this.body; },
    get metadata() { return cached(this, "metadata", () => parseOrNull(this.metadataRaw)); },
    get linkMetadata() { return cached(this, "linkMetadata", () => parseOrNull(this.linkMetadataRaw)); },
  };

  // The host passes the event's fields as arguments, in this order.
  function envelope(partition, bodyRaw, isJson, metadataRaw, linkMetadataRaw, streamId,
    eventType, sequenceNumber, eventId, category, created) {
    const event = Object.create(envelopePrototype);
    event.partition = partition;
    event.bodyRaw = bodyRaw;
    event.isJson = isJson;
    event.metadataRaw = metadataRaw;
    event.linkMetadataRaw = linkMetadataRaw;
    event.streamId = streamId;
    event.eventType = eventType;
    event.sequenceNumber = sequenceNumber;
    event.eventId = eventId;
    event.category = category;
    event.created = created;
    return event;
  }

  // QuickJS frees an object's shape (its layout) with the last object that has it, and a
  // shape does not keep the shapes it grew from: without these, every event would build
  // the envelope's eleven shapes anew. One object per prefix of the envelope's fields keeps
  // each shape alive, so envelopes after the first find them all. (The host object holds
  // them: a local no function refers to would be freed when this script returns.)
  const shapeKeepers = [];
  {
    const names = ["partition", "bodyRaw", "isJson", "metadataRaw", "linkMetadataRaw",
      "streamId", "eventType", "sequenceNumber", "eventId", "category", "created"];
    for (let length = 0; length <= names.length; length++) {
      const keeper = Object.create(envelopePrototype);
      for (let index = 0; index < length; index++) keeper[names[index]] = undefined;
      shapeKeepers.push(keeper);
    }
  }

  function initialState() {
    return initHandler === null ? {} : initHandler();
  }

  function callHandler(state, event) {
    if (typedHandlers) {
      const handler = handlers[event.eventType];
      if (handler !== undefined) return handler(state, event);
    }
    if (anyHandler !== null) return anyHandler(state, event);
    return event.bodyRaw;
  }

  function json(value) {
    return value === null || value === undefined ? null : stringify(value);
  }

  // Ends a handler's run: its emits as JSON, or null.
  function takeEmits() {
    const made = emitted;
    collecting = false;
    emitted = null;
    return made === null || made.length === 0 ? null : stringify(made);
  }

  function withEmits(action) {
    collecting = true;
    emitted = null;
    try {
      action();
    } catch (error) {
      collecting = false;
      emitted = null;
      throw error;
    }
    return takeEmits();
  }

  return {
    shapeKeepers,
    // Ends the definition stage: the definition functions leave the global object.
    finishDefinition() {
      for (const name of ownKeys(definitionFunctions)) delete global[name];
      return stringify(definition);
    },
    streamMatches(streamId) {
      return streamFilter !== null && streamFilter(streamId) === true;
    },
    unloadState(partition) {
      delete states[partition];
    },
    loadState(partition, stateJson) {
      states[partition] = stateJson == null ? initialState() : parse(stateJson);
    },
    loadShared(stateJson) {
      if (stateJson != null) shared = parse(stateJson);
      else shared = initSharedHandler === null ? {} : initSharedHandler();
    },
    partitionOf(partition, bodyRaw, isJson, metadataRaw, linkMetadataRaw, streamId, eventType,
      sequenceNumber, eventId, category, created) {
      if (partitionFunction === null) return null;
      const event = envelope("", bodyRaw, isJson, metadataRaw, linkMetadataRaw, streamId,
        eventType, sequenceNumber, eventId, category, created);
      partition = partitionFunction(event);
      if (typeof partition === "string") return partition;
      if (typeof partition === "number") return String(partition);
      return null;
    },
    // Inlined rather than through `withEmits`: this runs for every event.
    process(partition, bodyRaw, isJson, metadataRaw, linkMetadataRaw, streamId, eventType,
      sequenceNumber, eventId, category, created) {
      // `envelope`, inlined.
      const event = Object.create(envelopePrototype);
      event.partition = partition;
      event.bodyRaw = bodyRaw;
      event.isJson = isJson;
      event.metadataRaw = metadataRaw;
      event.linkMetadataRaw = linkMetadataRaw;
      event.streamId = streamId;
      event.eventType = eventType;
      event.sequenceNumber = sequenceNumber;
      event.eventId = eventId;
      event.category = category;
      event.created = created;
      collecting = true;
      emitted = null;
      try {
        if (definition.biState) {
          const pair = [states[partition], shared];
          let next = callHandler(pair, event);
          if (next === undefined) next = pair;
          if (isArray(next)) {
            states[partition] = next[0];
            shared = next[1];
          } else {
            states[partition] = next;
          }
        } else {
          // `callHandler`, inlined.
          const state = states[partition];
          let next;
          const handler = typedHandlers ? handlers[eventType] : undefined;
          if (handler !== undefined) next = handler(state, event);
          else if (anyHandler !== null) next = anyHandler(state, event);
          else next = bodyRaw;
          if (next !== undefined) states[partition] = next;
        }
      } catch (error) {
        collecting = false;
        emitted = null;
        throw error;
      }
      collecting = false;
      if (emitted === null) return null;
      return takeEmits();
    },
    created(partition, bodyRaw, isJson, metadataRaw, linkMetadataRaw, streamId, eventType,
      sequenceNumber, eventId, category, created) {
      return withEmits(() => {
        const event = envelope(partition, bodyRaw, isJson, metadataRaw, linkMetadataRaw,
          streamId, eventType, sequenceNumber, eventId, category, created);
        for (const handler of createdHandlers) handler(states[partition], event);
      });
    },
    deleted(partition, isSoftDelete) {
      return withEmits(() => {
        if (deletedHandler === null) return;
        const next = deletedHandler(states[partition], null, partition, isSoftDelete);
        if (next !== undefined) states[partition] = next;
      });
    },
    stateJson(partition) {
      return json(states[partition]);
    },
    sharedJson() {
      return json(shared);
    },
    resultJson(partition) {
      let state = states[partition];
      for (const [kind, transform] of transforms) {
        if (kind === "transform") {
          state = transform(state);
        } else if (transform(state) !== true) {
          return null;
        }
        if (state === null || state === undefined) return null;
      }
      return json(state);
    },
    takeLogs() {
      return logs.splice(0, logs.length);
    },
  };
})(globalThis)
