// The connectors pages (docs/CONNECTORS.md): the list with state, lag and counters, create
// from a JSON definition, and one connector's status, start/stop, reset, settings and
// delete. Everything goes through `/connectors` (docs/HTTP.md), which needs the Operations
// right: other users see the API's 403, as everywhere else.
import { api, enc } from './api.js';
import { h, clear, problemBox, jsonView, fmt } from './view.js';
import { codeEditor } from './editor.js';
import { go, every, guard, table } from './pages.js';

// One example definition per sink, to start from (docs/CONNECTORS.md, *Sinks*).
const EXAMPLES = {
  http: {
    id: 'orders-to-webhook',
    source: { kind: 'category', category: 'order' },
    sink: { type: 'http', url: 'http://127.0.0.1:8080/events', format: 'json', events_per_request: 1 },
    settings: { start_from: 'start', batch_events_max: 256, checkpoint_interval_events: 1000 },
  },
  nats: {
    id: 'orders-to-nats',
    source: { kind: 'category', category: 'order' },
    sink: { type: 'nats', url: 'nats://127.0.0.1:4222', subject: 'events.{category}.{stream}',
      create_stream: { name: 'EVENTS', subjects: ['events.>'] } },
    settings: { start_from: 'start' },
  },
  'rabbit-mq': {
    id: 'orders-to-rabbit',
    source: { kind: 'all', filter: { target: 'stream_name', prefixes: ['order-'] } },
    sink: { type: 'rabbit-mq', url: 'amqp://guest:guest@127.0.0.1:5672/%2f', exchange: 'events', declare_exchange: 'topic', routing_key: '{category}.{type}' },
    settings: { start_from: 'end' },
  },
};

const STATES = { stopped: 'stopped', starting: 'starting', running: 'running', retrying: 'retrying' };

function statePill(c) {
  return h('span', { class: `pill ${STATES[c.state] || ''}`, 'data-state': c.state }, c.state);
}

function lag(c) {
  if (c.lag_events === null || c.lag_events === undefined) return '–';
  return `${fmt(c.lag_events)}${c.lag_events >= 10000 ? '+' : ''} events · ${fmt(c.lag_seconds, 1)} s`;
}

function place(n) { return n === null || n === undefined ? '–' : String(n); }

export async function connectors(main, _params, signal) {
  const list = h('div', { id: 'connectors' });
  const out = h('div', { role: 'status', id: 'connector-create-result' });
  const example = h('select', { name: 'example', 'aria-label': 'Example sink', onchange: () => {
    editor.querySelector('textarea').value = JSON.stringify(EXAMPLES[example.value], null, 2);
  } }, Object.keys(EXAMPLES).map((k) => h('option', { value: k }, k)));
  const editor = codeEditor('definition', JSON.stringify(EXAMPLES.http, null, 2), { rows: 14 });
  const form = h('form', { id: 'connector-form', onsubmit: async (e) => {
    e.preventDefault();
    const text = new FormData(form).get('definition');
    // The server validates (JSON, id, source, sink, templates, settings) and names the
    // problem; the page only sends the text as typed.
    try {
      const created = await api('/connectors', { method: 'POST', body: text });
      go(`#/connector/${enc(created.id)}`);
    } catch (error) { out.replaceChildren(problemBox(error)); }
  } },
  h('div', { class: 'toolbar' }, h('label', {}, 'Start from an example', example)),
  h('label', {}, 'Definition (JSON)', editor),
  h('p', { class: 'muted' }, 'The sink must answer when the connector is created; ',
    'secrets (passwords in URLs, tokens, header values, signing keys) are shown back as ***.'),
  h('button', { type: 'submit', class: 'primary' }, 'Create and start'), out);
  clear(main, h('h1', {}, 'Connectors'),
    h('p', { class: 'muted' }, 'Connectors publish the log to NATS JetStream, RabbitMQ or an HTTP endpoint. ',
      'Managing them needs the Operations right ($admins, $ops). Refreshed every 2 s.'),
    list, h('h2', {}, 'Create a connector'), form);
  every(2000, signal, guard(list, async () => {
    const all = await api('/connectors', { signal });
    list.replaceChildren(all.length ? table(['Id', 'Sink', 'State', 'Enabled', 'Position', 'Checkpoint', 'Lag', 'Published', 'Dead-lettered', 'Failures', 'Last error'],
      all.map((c) => [h('a', { href: `#/connector/${enc(c.id)}` }, c.id), c.sink, statePill(c), c.enabled ? 'yes' : 'no',
        place(c.position), place(c.checkpoint), lag(c), fmt(c.counters.published), fmt(c.counters.dead_lettered), fmt(c.counters.failures),
        c.last_error ? h('span', { class: 'error' }, c.last_error) : '–']), { id: 'connectors-table' })
      : h('p', { class: 'muted' }, 'No connectors yet.'));
  }));
}

export async function connector(main, params, signal) {
  const id = params.get('id');
  const path = `/connectors/${enc(id)}`;
  const first = await api(path, { signal });
  const status = h('div', { id: 'connector-status' });
  const definition = h('div', { id: 'connector-definition' });
  const out = h('div', { role: 'status', id: 'connector-result' });
  const done = (text) => { out.replaceChildren(h('p', { class: 'ok' }, text)); refresh(); };
  const command = (verb, body) => async () => {
    try { await api(`${path}/${verb}`, { method: 'POST', body }); done(`${verb[0].toUpperCase()}${verb.slice(1)}: done.`); } catch (error) { out.replaceChildren(problemBox(error)); }
  };
  const startButton = h('button', { id: 'connector-start', onclick: command('start') }, 'Start');
  const stopButton = h('button', { id: 'connector-stop', onclick: command('stop') }, 'Stop');

  const after = h('input', { name: 'after', type: 'number', min: 0, 'aria-label': 'Position (or revision) to reset after' });
  const resetForm = h('form', { id: 'reset-form', class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    const where = new FormData(resetForm).get('from');
    let from = where;
    if (where === 'after') {
      if (after.value === '') { out.replaceChildren(h('p', { class: 'error' }, 'Give the position (or, for a stream source, the revision) to reset after.')); return; }
      from = { after: Number(after.value) };
    }
    if (!confirm(`Reset connector ${id} to ${where === 'after' ? `after ${after.value}` : `the ${where}`}? Events may be published again.`)) return;
    try { await api(`${path}/reset`, { method: 'POST', body: { from } }); done('Reset: done.'); } catch (error) { out.replaceChildren(problemBox(error)); }
  } },
  h('label', {}, 'Reset to', h('select', { name: 'from' },
    h('option', { value: 'start' }, 'the start'), h('option', { value: 'end' }, 'the end'), h('option', { value: 'after' }, 'after a position'))),
  h('label', {}, 'Position', after),
  h('button', { type: 'submit' }, 'Reset…'));

  const settingsEditor = codeEditor('settings', JSON.stringify(first.definition.settings ?? {}, null, 2), { rows: 8, label: 'Settings (JSON)' });
  const settingsForm = h('form', { id: 'settings-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api(`${path}/settings`, { method: 'PUT', body: new FormData(settingsForm).get('settings') });
      done('Settings saved; a running connector restarted with them.');
    } catch (error) { out.replaceChildren(problemBox(error)); }
  } }, settingsEditor, h('button', { type: 'submit', class: 'primary' }, 'Save settings'));

  // The transform: JavaScript mapping one event to one message (docs/CONNECTORS.md,
  // *Transforms*); the server compiles it and refuses one that does not compile.
  const transformEditor = codeEditor('transform', first.definition.transform ?? '', { rows: 8, label: 'Transform (JavaScript)' });
  const transformForm = h('form', { id: 'transform-form', onsubmit: async (e) => {
    e.preventDefault();
    const text = new FormData(transformForm).get('transform');
    try {
      await api(`${path}/transform`, { method: 'PUT', body: { transform: text.trim() ? text : null } });
      done(text.trim() ? 'Transform saved; a running connector restarted with it.' : 'Transform removed.');
    } catch (error) { out.replaceChildren(problemBox(error)); }
  } }, transformEditor, h('button', { type: 'submit', class: 'primary' }, 'Save transform'));

  const deleteButton = h('button', { class: 'danger', onclick: async () => {
    const typed = prompt(`Delete connector "${id}"? Its definition and checkpoint are removed (dead letters stay).\n\nType the connector's id (${id}) to confirm:`);
    if (typed !== id) { out.replaceChildren(h('p', { class: 'muted' }, 'Not deleted: the id typed did not match.')); return; }
    try { await api(path, { method: 'DELETE' }); go('#/connectors'); } catch (error) { out.replaceChildren(problemBox(error)); }
  } }, 'Delete…');

  clear(main, h('h1', {}, 'Connector ', h('code', {}, id)), status,
    h('div', { class: 'toolbar' }, startButton, stopButton, deleteButton), resetForm, out,
    h('p', {}, 'Streams: ',
      h('a', { href: `#/stream/${enc(`$connectors/${id}/dead-letters`)}` }, 'dead letters'), ' · ',
      h('a', { href: `#/stream/${enc(`$connectors/${id}/checkpoints`)}` }, 'checkpoints')),
    h('h2', {}, 'Settings'), h('p', { class: 'muted' }, 'The whole settings object; fields left out take their defaults.'), settingsForm,
    h('h2', {}, 'Transform'), h('p', { class: 'muted' }, 'A function from one event (id, stream, revision, position, type, data, metadata) to the message published: ',
      'return an object whose type, data and metadata replace the event\'s, or null to skip it. Empty: events go out as they are.'), transformForm,
    h('h2', {}, 'Definition'), h('p', { class: 'muted' }, 'Secrets are shown as ***.'), definition);

  let refresh = () => {};
  const draw = (c) => {
    startButton.disabled = c.enabled;
    stopButton.disabled = !c.enabled;
    status.replaceChildren(h('table', {}, h('tbody', {}, [
      ['State', statePill(c)], ['Enabled', c.enabled ? 'yes' : 'no'], ['Sink', c.sink],
      ['Position', place(c.position)], ['Checkpoint', place(c.checkpoint)], ['Log position', place(c.log_position)],
      ['Lag', h('span', { id: 'connector-lag' }, lag(c))],
      ['Last error', c.last_error ? h('span', { class: 'error' }, c.last_error) : '–'],
      ['Published', h('span', { id: 'connector-published' }, fmt(c.counters.published))], ['Duplicates', fmt(c.counters.duplicates)],
      ['Retried', fmt(c.counters.retried)], ['Dead-lettered', fmt(c.counters.dead_lettered)],
      ['Checkpoints', fmt(c.counters.checkpoints)], ['Failures', fmt(c.counters.failures)],
    ].map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))));
    definition.replaceChildren(jsonView(c.definition));
  };
  draw(first);
  refresh = guard(status, async () => draw(await api(path, { signal })));
  every(2000, signal, refresh);
}
