// The pages. Each takes the main element, the route's parameters and an AbortSignal that
// fires when the user leaves the page (timers and subscriptions stop then).
import { api, subscribe, enc, ApiError } from './api.js';
import { h, clear, problemBox, jsonView, base64ToHex, fmt, bytes, confirmNaming } from './view.js';
import { Chart } from './chart.js';
import { codeEditor } from './editor.js';

const PAGE = 50;

export function go(hash) { location.hash = hash; }
export function every(ms, signal, fn) {
  const id = setInterval(fn, ms);
  signal.addEventListener('abort', () => clearInterval(id));
  fn();
}
export function guard(target, fn) {
  return async (...args) => {
    try { await fn(...args); } catch (error) {
      if (error.name === 'AbortError') return;
      target.replaceChildren(problemBox(error));
    }
  };
}

// ---------- Dashboard ----------

// Sums and counts of a histogram, and plain values, from the OpenMetrics text.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const nameLabels = line.slice(0, space);
    const name = nameLabels.split('{')[0];
    const value = Number(line.slice(space + 1));
    out[name] = (out[name] || 0) + value;
    out[nameLabels] = value;
  }
  return out;
}

export async function dashboard(main, _params, signal) {
  const info = await api('/info');
  const cards = {};
  const card = (key, title, unit) => {
    const value = h('div', { class: 'value', 'data-metric': key }, '–');
    const chart = new Chart(title);
    cards[key] = { value, chart, unit };
    return h('section', { class: 'card' }, h('h3', {}, title), value, chart.svg);
  };
  const status = h('p', { class: 'muted', role: 'status' });
  clear(main,
    h('h1', {}, 'Dashboard'),
    h('div', { class: 'grid' },
      h('section', { class: 'card', id: 'node' },
        h('h3', {}, 'Node'),
        h('div', {}, `Strata ${info.strataVersion}`),
        h('div', {}, `Store: ${info.store}`),
        h('div', {}, `KurrentDB protocol ${info.dbVersion}, ${info.state}`),
        h('div', { id: 'uptime' }, 'Uptime –')),
      card('appends', 'Events appended /s'),
      card('reads', 'Events read /s'),
      card('commit', 'Group commit size (appends)'),
      card('fsync', 'fsync latency (ms, mean)'),
      card('log', 'Log size'),
      card('subs', 'Subscriptions (HTTP) / groups'),
      card('calls', 'gRPC calls in progress')),
    status,
    h('p', { class: 'muted' }, 'Refreshed every second from /stats and /metrics.'));
  let previous = null;
  every(1000, signal, guard(status, async () => {
    const [stats, text] = await Promise.all([api('/stats', { signal }), api('/metrics', { signal })]);
    const m = parseMetrics(text);
    const now = performance.now();
    document.getElementById('uptime').textContent = `Uptime ${fmt(stats.uptimeSeconds)} s`;
    const sample = {
      t: now, written: stats.eventsWritten, read: stats.eventsRead,
      commitSum: m.strata_group_commit_appends_sum || 0, commitCount: m.strata_group_commit_appends_count || 0,
      fsyncSum: m.strata_fsync_duration_seconds_sum || 0, fsyncCount: m.strata_fsync_duration_seconds_count || 0,
    };
    if (previous) {
      const dt = (sample.t - previous.t) / 1000;
      const show = (key, value, text) => { cards[key].chart.push(value); cards[key].value.textContent = text ?? fmt(value, 1); };
      show('appends', (sample.written - previous.written) / dt);
      show('reads', (sample.read - previous.read) / dt);
      const commits = sample.commitCount - previous.commitCount;
      show('commit', commits ? (sample.commitSum - previous.commitSum) / commits : 0);
      const syncs = sample.fsyncCount - previous.fsyncCount;
      show('fsync', syncs ? ((sample.fsyncSum - previous.fsyncSum) / syncs) * 1000 : 0, syncs ? undefined : 'idle');
      const log = stats.lastPosition ?? 0;
      show('log', log, bytes(log));
      show('subs', stats.httpSubscriptions, `${stats.httpSubscriptions} / ${stats.persistentSubscriptionGroups}`);
      show('calls', m.kurrentdb_current_incoming_grpc_calls || 0, fmt(m.kurrentdb_current_incoming_grpc_calls || 0));
    }
    previous = sample;
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }));
}

// ---------- Streams ----------

function linkTarget(event) {
  if (event.type !== '$>' || !event.dataBase64) return null;
  const text = atob(event.dataBase64);
  const at = text.indexOf('@');
  return at > 0 ? { revision: text.slice(0, at), stream: text.slice(at + 1) } : null;
}

export async function streams(main, params, signal) {
  const prefix = params.get('prefix') || '';
  const results = h('div', { id: 'stream-list' });
  const categories = h('div', { id: 'categories' });
  const types = h('div', { id: 'types' });
  const input = h('input', { name: 'prefix', value: prefix, placeholder: 'stream name or prefix', 'aria-label': 'Stream prefix' });
  clear(main,
    h('h1', {}, 'Streams'),
    h('form', { class: 'inline', role: 'search', onsubmit: (e) => { e.preventDefault(); go(`#/streams?prefix=${enc(input.value)}`); } },
      h('label', {}, 'Prefix', input), h('button', { type: 'submit' }, 'Search'),
      h('button', { type: 'button', onclick: () => input.value && go(`#/stream/${enc(input.value)}`) }, 'Open stream')),
    h('div', { class: 'grid' },
      h('section', {}, h('h2', {}, 'Streams'), results),
      h('section', {}, h('h2', {}, 'Categories'), categories),
      h('section', {}, h('h2', {}, 'Event types (last 1,000 events)'), types)),
    h('h2', {}, 'Append an event'), appendForm(null));
  // $streams links to each stream's first event, newest last: read it backwards.
  const names = [];
  let from = 'end';
  for (let pages = 0; pages < 20 && names.length < 200 && from !== null; pages++) {
    let page;
    try {
      page = await api(`/v1/streams/$streams?direction=backwards&from=${from}&count=1000`, { signal });
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) break;
      results.replaceChildren(problemBox(error));
      return;
    }
    for (const event of page.events) {
      const target = linkTarget(event);
      if (target && target.stream.startsWith(prefix) && !target.stream.startsWith('$$')) names.push(target.stream);
    }
    from = page.nextRevision;
  }
  results.replaceChildren(names.length
    ? h('ul', {}, names.slice(0, 200).map((name) => h('li', {}, h('a', { href: `#/stream/${enc(name)}` }, name))))
    : h('p', { class: 'muted' }, prefix ? `No stream starts with "${prefix}".` : 'No streams yet.'));
  const cats = [...new Set(names.map((n) => n.split('-')[0]).filter((c, _i, _a) => c && names.some((n) => n.startsWith(`${c}-`))))];
  const countOf = async (stream) => {
    try {
      const page = await api(`/v1/streams/${enc(stream)}?direction=backwards&from=end&count=1`, { signal });
      return page.lastRevision + 1;
    } catch { return null; }
  };
  const catRows = await Promise.all(cats.slice(0, 50).map(async (c) => [c, await countOf(`$ce-${c}`)]));
  categories.replaceChildren(catRows.length ? table(['Category', 'Events'], catRows.map(([c, n]) =>
    [h('a', { href: `#/stream/${enc(`$ce-${c}`)}` }, c), fmt(n)])) : h('p', { class: 'muted' }, 'None.'));
  try {
    const recent = await api('/v1/all?direction=backwards&from=end&count=1000&excludeSystemEvents=true', { signal });
    const seen = [...new Set(recent.events.map((e) => e.type))].slice(0, 50);
    const typeRows = await Promise.all(seen.map(async (t) => [t, await countOf(`$et-${t}`)]));
    types.replaceChildren(typeRows.length ? table(['Type', 'Events'], typeRows.map(([t, n]) =>
      [h('a', { href: `#/stream/${enc(`$et-${t}`)}` }, t), fmt(n)])) : h('p', { class: 'muted' }, 'None.'));
  } catch (error) { types.replaceChildren(problemBox(error)); }
}

export function table(head, rows, attrs = {}) {
  return h('div', { class: 'scroll' }, h('table', attrs,
    h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
}

function appendForm(stream) {
  const out = h('div', { role: 'status' });
  const form = h('form', { id: 'append-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const target = stream || f.get('stream');
    try {
      const event = { type: f.get('type') };
      const data = f.get('data').trim();
      event.data = data ? JSON.parse(data) : {};
      const meta = f.get('metadata').trim();
      if (meta) event.metadata = JSON.parse(meta);
      const written = await api(`/v1/streams/${enc(target)}`, { method: 'POST', body: { expectedRevision: 'any', events: [event] } });
      out.replaceChildren(h('p', { class: 'ok' }, `Appended to ${target} at revision ${written.revision}. `,
        h('a', { href: `#/stream/${enc(target)}` }, 'Open the stream')));
      if (stream) window.dispatchEvent(new HashChangeEvent('hashchange'));
    } catch (error) {
      out.replaceChildren(error instanceof SyntaxError ? h('p', { class: 'error' }, `Not JSON: ${error.message}`) : problemBox(error));
    }
  } },
  stream ? null : h('label', {}, 'Stream', h('input', { name: 'stream', required: true })),
  h('label', {}, 'Event type', h('input', { name: 'type', required: true })),
  h('label', {}, 'Data (JSON)', h('textarea', { name: 'data', rows: 4 }, '{}')),
  h('label', {}, 'Metadata (JSON, optional)', h('textarea', { name: 'metadata', rows: 2 })),
  h('button', { type: 'submit', class: 'primary' }, 'Append'), out);
  return form;
}

function eventBody(event) {
  const parts = [];
  if (event.link) parts.push(h('p', { class: 'muted' }, `Resolved from link ${event.link.stream}@${event.link.revision}`));
  const show = (label, json, b64) => {
    if (json !== undefined) parts.push(h('h3', {}, label), jsonView(json));
    else if (b64 !== undefined) {
      parts.push(h('h3', {}, `${label} (bytes)`), h('details', { open: true }, h('summary', {}, 'hex'), h('pre', { class: 'json' }, base64ToHex(b64))),
        h('details', {}, h('summary', {}, 'base64'), h('pre', { class: 'json' }, b64)));
      const target = linkTarget({ type: event.type, dataBase64: b64 });
      if (label === 'Data' && target) parts.push(h('p', {}, 'Link to ', h('a', { href: `#/stream/${enc(target.stream)}?from=${target.revision}&dir=forwards` }, `${target.revision}@${target.stream}`)));
    }
  };
  show('Data', event.data, event.dataBase64);
  show('Metadata', event.metadata, event.metadataBase64);
  return parts;
}

export async function stream(main, params, signal) {
  const name = params.get('name');
  const dir = params.get('dir') || 'backwards';
  const from = params.get('from') || (dir === 'backwards' ? 'end' : 'start');
  const resolve = params.get('resolve') !== 'false';
  const t0 = performance.now();
  const list = h('div', { id: 'events' });
  const meta = h('section', { id: 'metadata' });
  const nav = h('div', { class: 'toolbar' });
  const timing = h('p', { class: 'muted', id: 'page-timing' });
  clear(main, h('h1', {}, 'Stream ', h('code', { id: 'stream-name' }, name)), nav, list, timing,
    h('details', {}, h('summary', {}, 'Append to this stream'), appendForm(name)),
    h('h2', {}, 'Metadata'), meta,
    h('h2', {}, 'Delete'), deleteControls(name));
  const base = `#/stream/${enc(name)}`;
  let page;
  try {
    page = await api(`/v1/streams/${enc(name)}?direction=${dir}&from=${from}&count=${PAGE}&resolveLinks=${resolve}`, { signal });
  } catch (error) {
    list.replaceChildren(problemBox(error));
    if (error.status !== 404) return;
  }
  if (page) {
    const events = dir === 'backwards' ? page.events : [...page.events].reverse();
    const first = events[0]; const last = events[events.length - 1];
    nav.replaceChildren(
      h('a', { href: `${base}?dir=backwards&from=end` }, '⇤ Newest'),
      first ? h('a', { href: `${base}?dir=forwards&from=${(first.link || first).revision + 1}`, rel: 'prev', id: 'newer' }, '← Newer') : null,
      last && (last.link || last).revision > 0 ? h('a', { href: `${base}?dir=backwards&from=${(last.link || last).revision - 1}`, rel: 'next', id: 'older' }, 'Older →') : null,
      h('a', { href: `${base}?dir=forwards&from=start` }, 'Oldest ⇥'),
      h('span', { class: 'muted' }, `last revision ${page.lastRevision}`),
      h('a', { href: `${base}?dir=${dir}&from=${from}&resolve=${!resolve}` }, resolve ? 'Show links unresolved' : 'Resolve links'));
    list.replaceChildren(events.length ? table(['Rev', 'Type', 'Created', 'Position'], events.map((e) => {
      const place = e.link || e;
      return [h('a', { href: `#/event/${enc(name)}/${place.revision}` }, String(place.revision)),
        e.link ? `${e.type} (via link)` : e.type, h('span', { class: 'hide-narrow' }, e.created), String(place.position)];
    }), { id: 'events-table' }) : h('p', { class: 'muted' }, 'No events here.'));
    timing.textContent = `Page of ${events.length} in ${(performance.now() - t0).toFixed(0)} ms`;
  }
  metadataEditor(meta, name, signal);
}

function deleteControls(name) {
  const out = h('div', { role: 'status' });
  const run = (mode) => async () => {
    const what = mode === 'tombstone'
      ? `Tombstone stream "${name}"? It can never be written again.`
      : `Soft delete stream "${name}"? Its events are hidden; appending again restarts it.`;
    if (!confirmNaming(what, name)) { out.replaceChildren(h('p', { class: 'muted' }, 'Not deleted: the name typed did not match.')); return; }
    try {
      await api(`/v1/streams/${enc(name)}?mode=${mode}`, { method: 'DELETE' });
      out.replaceChildren(h('p', { class: 'ok' }, mode === 'tombstone' ? `Tombstoned ${name}.` : `Soft deleted ${name}.`));
    } catch (error) { out.replaceChildren(problemBox(error)); }
  };
  return h('div', {}, h('div', { class: 'toolbar' },
    h('button', { class: 'danger', onclick: run('soft') }, 'Soft delete…'),
    h('button', { class: 'danger', onclick: run('tombstone') }, 'Tombstone…')), out);
}

async function metadataEditor(section, name, signal) {
  let current;
  try { current = await api(`/v1/streams/${enc(name)}/metadata`, { signal }); } catch (error) {
    if (error.status === 404) current = null; else { section.replaceChildren(problemBox(error)); return; }
  }
  const revision = current && current.revision !== undefined ? current.revision : null;
  const body = current ? (current.metadata ?? current) : {};
  const out = h('div', { role: 'status', id: 'metadata-result' });
  const form = h('form', { id: 'metadata-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    let json;
    try { json = JSON.parse(f.get('metadata')); } catch (error) { out.replaceChildren(h('p', { class: 'error' }, `Not JSON: ${error.message}`)); return; }
    const expected = f.get('expected').trim();
    try {
      const written = await api(`/v1/streams/${enc(name)}/metadata${expected ? `?expectedRevision=${enc(expected)}` : ''}`, { method: 'PUT', body: json });
      out.replaceChildren(h('p', { class: 'ok' }, `Saved as metadata revision ${written && written.revision !== undefined ? written.revision : ''}.`));
    } catch (error) {
      if (error.status === 409) {
        const actual = error.problem.actualRevision;
        out.replaceChildren(h('div', { class: 'problem', role: 'alert', id: 'metadata-conflict' },
          h('strong', {}, 'Conflict: '),
          `the metadata was not saved because you expected revision ${expected}, but the metadata stream is at ${actual === undefined || actual === null ? 'no revision (never written)' : `revision ${actual}`}. `,
          'Someone else may have changed it. Reload to see the current metadata, then edit again.'));
      } else out.replaceChildren(problemBox(error));
    }
  } },
  h('p', { class: 'muted' }, revision === null ? 'No metadata written yet.' : `Metadata revision ${revision}.`),
  h('label', {}, 'Metadata (JSON)', h('textarea', { name: 'metadata', rows: 6, class: 'code' }, JSON.stringify(body, null, 2))),
  h('label', {}, 'Expected revision (empty: any)', h('input', { name: 'expected', value: revision === null ? '' : String(revision), inputmode: 'numeric' })),
  h('button', { type: 'submit', class: 'primary' }, 'Save metadata'), out);
  section.replaceChildren(form);
}

export async function event(main, params, signal) {
  const name = params.get('name'); const revision = params.get('revision');
  const page = await api(`/v1/streams/${enc(name)}?direction=forwards&from=${revision}&count=1&resolveLinks=true`, { signal });
  const e = page.events[0];
  if (!e) { clear(main, h('h1', {}, 'Event not found'), h('a', { href: `#/stream/${enc(name)}` }, 'Back to the stream')); return; }
  const place = e.link || e;
  clear(main, h('h1', {}, `${name} @ ${place.revision}`),
    h('p', {}, h('a', { href: `#/stream/${enc(name)}?dir=backwards&from=${place.revision}` }, '← Back to the stream')),
    h('table', {}, h('tbody', {},
      [['Type', e.type], ['Id', e.id], ['Stream', e.stream], ['Revision', e.revision], ['Position', e.position], ['Content type', e.contentType], ['Created', e.created]]
        .map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, String(v)))))),
    eventBody(e));
}

// ---------- Live tail ----------

const TAIL_ROWS = 200;

export async function tail(main, params, signal) {
  const form = h('form', { class: 'inline', id: 'tail-form', onsubmit: (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const q = new URLSearchParams();
    for (const k of ['filter', 'value', 'correlation']) if (f.get(k)) q.set(k, f.get(k));
    go(`#/tail?${q}`);
  } },
  h('label', {}, 'Filter', h('select', { name: 'filter' },
    [['', 'none'], ['streamPrefix', 'stream prefix'], ['streamRegex', 'stream regex'], ['eventTypePrefix', 'event type prefix'], ['eventTypeRegex', 'event type regex']]
      .map(([v, t]) => h('option', { value: v, selected: params.get('filter') === v }, t)))),
  h('label', {}, 'Value', h('input', { name: 'value', value: params.get('value') || '' })),
  h('label', {}, 'Correlation id', h('input', { name: 'correlation', value: params.get('correlation') || '' })),
  h('button', { type: 'submit' }, 'Apply'));
  const rows = h('div', { class: 'tail', id: 'tail', 'aria-live': 'off' });
  const rate = h('span', { id: 'tail-rate', class: 'muted' });
  let paused = false;
  const pause = h('button', { id: 'pause', 'aria-pressed': 'false', onclick: () => {
    paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause'; pause.setAttribute('aria-pressed', String(paused));
  } }, 'Pause');
  const correlation = params.get('correlation');
  clear(main, h('h1', {}, 'Live tail of $all'), form, h('div', { class: 'toolbar' }, pause, rate),
    h('p', { class: 'notice' }, `New events from now on, newest first. The page redraws at most every 100 ms and keeps the last ${TAIL_ROWS}: `,
      'at high rates it shows a sample (the newest events of each redraw) and counts every event it received.'),
    correlation ? h('p', { class: 'notice' }, `Following correlation id ${correlation}: only events whose metadata has this $correlationId or whose id is it.`) : null,
    rows);
  const q = new URLSearchParams({ from: 'end', excludeSystemEvents: 'true' });
  if (params.get('filter') && params.get('value')) { q.set(params.get('filter'), params.get('value')); q.delete('excludeSystemEvents'); }
  let pending = [];
  let received = 0; let shown = 0;
  let windowStart = performance.now(); let windowCount = 0;
  const matches = (e) => !correlation || e.id === correlation || (e.metadata && (e.metadata.$correlationId === correlation || e.metadata.correlationId === correlation));
  const draw = () => {
    if (!pending.length || paused) return;
    const batch = pending.slice(-TAIL_ROWS);
    const skipped = pending.length - batch.length;
    pending = [];
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) {
      const e = batch[i];
      fragment.append(h('div', { 'data-stream': e.stream },
        h('a', { href: `#/event/${enc(e.stream)}/${e.revision}` }, `${e.stream}@${e.revision}`), ` ${e.type} `,
        h('span', { class: 'muted' }, e.data !== undefined ? JSON.stringify(e.data).slice(0, 200) : '(bytes)')));
    }
    if (skipped) fragment.append(h('div', { class: 'muted' }, `… ${fmt(skipped)} more events in this redraw not shown (sampled)`));
    rows.prepend(fragment);
    while (rows.childElementCount > TAIL_ROWS + 20) rows.lastElementChild.remove();
    shown += batch.length;
  };
  every(100, signal, draw);
  every(1000, signal, () => {
    const now = performance.now();
    rate.textContent = `${fmt(windowCount / ((now - windowStart) / 1000), 0)} events/s · ${fmt(received)} received · ${fmt(shown)} shown${paused ? ' · paused (events are counted, not kept)' : ''}`;
    windowStart = now; windowCount = 0;
  });
  try {
    await subscribe(`/v1/subscriptions/all?${q}`, (items) => {
      for (const item of items) {
        if (item.kind !== 'event') continue;
        received++; windowCount++;
        if (!paused && matches(item.event)) {
          pending.push(item.event);
          if (pending.length > 4 * TAIL_ROWS) pending.splice(0, pending.length - TAIL_ROWS);
        }
      }
    }, signal, () => { rows.dataset.open = 'true'; });
  } catch (error) {
    if (error.name !== 'AbortError') rows.prepend(problemBox(error));
  }
}

// ---------- Persistent subscriptions ----------

async function lagOf(group, stats, signal) {
  if (group.lastCheckpointedPlace === null || group.lastCheckpointedPlace === undefined) return null;
  if (group.stream === '$all') return stats.lastPosition === null ? 0 : `${bytes(Math.max(0, stats.lastPosition - group.lastCheckpointedPlace))}`;
  try {
    const page = await api(`/v1/streams/${enc(group.stream)}?direction=backwards&from=end&count=1`, { signal });
    return `${fmt(Math.max(0, page.lastRevision - group.lastCheckpointedPlace))} events`;
  } catch { return null; }
}

export async function persistent(main, _params, signal) {
  const list = h('div', { id: 'groups' });
  clear(main, h('h1', {}, 'Persistent subscriptions'), list, h('h2', {}, 'Create a group'), groupForm(null));
  every(2000, signal, guard(list, async () => {
    const [groups, stats] = await Promise.all([api('/v1/persistent-subscriptions', { signal }), api('/stats', { signal })]);
    const lags = await Promise.all(groups.map((g) => lagOf(g, stats, signal)));
    list.replaceChildren(groups.length ? table(['Source', 'Group', 'Status', 'Strategy', 'Consumers', 'In flight', 'Parked', 'Lag (checkpoint)'],
      groups.map((g, i) => [g.stream, h('a', { href: `#/persistent/${enc(g.stream)}/${enc(g.group)}` }, g.group), g.status, g.consumerStrategy,
        String(g.connections.length), String(g.inFlightCount), String(g.parkedCount), lags[i] ?? '–'])) : h('p', { class: 'muted' }, 'No groups yet.'));
  }));
}

function groupForm(existing) {
  const out = h('div', { role: 'status' });
  const form = h('form', { id: 'group-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const stream = existing ? existing.stream : f.get('stream');
    const group = existing ? existing.group : f.get('group');
    const settings = { consumerStrategy: f.get('strategy'), maxRetryCount: Number(f.get('maxRetry')), messageTimeoutMs: Number(f.get('timeout')) };
    if (!existing) { const s = f.get('start'); settings.startFrom = /^\d+$/.test(s) ? Number(s) : s; }
    try {
      await api(`/v1/persistent-subscriptions/${enc(stream)}/${enc(group)}`, { method: existing ? 'PATCH' : 'PUT', body: settings });
      if (existing) out.replaceChildren(h('p', { class: 'ok' }, 'Saved.')); else go(`#/persistent/${enc(stream)}/${enc(group)}`);
    } catch (error) { out.replaceChildren(problemBox(error)); }
  } },
  existing ? null : h('label', {}, 'Stream ($all for all)', h('input', { name: 'stream', required: true })),
  existing ? null : h('label', {}, 'Group', h('input', { name: 'group', required: true })),
  existing ? null : h('label', {}, 'Start from (start, end or a number)', h('input', { name: 'start', value: 'start' })),
  h('label', {}, 'Consumer strategy', h('select', { name: 'strategy' }, ['RoundRobin', 'DispatchToSingle', 'Pinned', 'PinnedByCorrelation']
    .map((s) => h('option', { value: s, selected: existing && existing.consumerStrategy === s }, s)))),
  h('label', {}, 'Max retry count', h('input', { name: 'maxRetry', type: 'number', min: 0, value: existing ? existing.maxRetryCount : 10 })),
  h('label', {}, 'Message timeout (ms)', h('input', { name: 'timeout', type: 'number', min: 0, value: existing ? existing.messageTimeoutMs : 30000 })),
  h('button', { type: 'submit', class: 'primary' }, existing ? 'Save settings' : 'Create'), out);
  return form;
}

export async function group(main, params, signal) {
  const stream = params.get('stream'); const name = params.get('group');
  const path = `/v1/persistent-subscriptions/${enc(stream)}/${enc(name)}`;
  const info = await api(path, { signal });
  const details = h('div', { id: 'group-details' });
  const parked = h('div', { id: 'parked' });
  const out = h('div', { role: 'status', id: 'replay-result' });
  clear(main, h('h1', {}, `Group ${name} on ${stream}`), details,
    h('h2', {}, 'Parked messages'), parked,
    h('div', { class: 'toolbar' },
      h('button', { id: 'replay', class: 'primary', onclick: async () => {
        try { await api(`${path}/replay-parked`, { method: 'POST' }); out.replaceChildren(h('p', { class: 'ok' }, 'Parked messages sent back to the group.')); } catch (error) { out.replaceChildren(problemBox(error)); }
      } }, 'Replay parked messages'),
      h('button', { class: 'danger', onclick: async () => {
        if (!confirm(`Delete group ${name} on ${stream}?`)) return;
        try { await api(path, { method: 'DELETE' }); go('#/persistent'); } catch (error) { out.replaceChildren(problemBox(error)); }
      } }, 'Delete group…')), out,
    h('h2', {}, 'Settings'), groupForm(info));
  const parkedStream = `$persistentsubscription-${stream}::${name}-parked`;
  every(2000, signal, guard(details, async () => {
    const g = await api(path, { signal });
    details.replaceChildren(h('table', {}, h('tbody', {}, [
      ['Status', g.status], ['Strategy', g.consumerStrategy], ['Start from', g.startFrom], ['Consumers', g.connections.map((c) => `${c.name} (${c.inFlight} in flight)`).join(', ') || 'none'],
      ['Delivered', g.totalItems], ['Checkpoint', g.lastCheckpointedPlace ?? '–'], ['Last known', g.lastKnownPlace ?? '–'],
      ['Ready', g.readyCount], ['Retrying', g.retryCount], ['In flight', g.inFlightCount], ['Parked', h('span', { id: 'parked-count' }, String(g.parkedCount))],
    ].map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))));
    try {
      const page = await api(`/v1/streams/${enc(parkedStream)}?direction=backwards&from=end&count=${PAGE}&resolveLinks=true`, { signal });
      parked.replaceChildren(page.events.length ? table(['Parked', 'Event', 'Type'], page.events.map((e) => [
        String((e.link || e).revision), e.link ? h('a', { href: `#/event/${enc(e.stream)}/${e.revision}` }, `${e.stream}@${e.revision}`) : 'gone', e.type]))
        : h('p', { class: 'muted' }, 'The parked stream is empty (messages replayed stay in it until its truncation).'));
    } catch (error) {
      parked.replaceChildren(error.status === 404 ? h('p', { class: 'muted' }, 'Nothing was ever parked.') : problemBox(error));
    }
  }));
}

// ---------- Projections ----------

export async function projections(main, _params, signal) {
  const list = h('div', { id: 'projections' });
  const out = h('div', { role: 'status' });
  const form = h('form', { id: 'projection-form', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      await api(`/v1/projections/${enc(f.get('name'))}`, { method: 'PUT', body: { query: f.get('query'), mode: f.get('mode'), emitEnabled: f.get('emit') === 'on' } });
      go(`#/projection/${enc(f.get('name'))}`);
    } catch (error) { out.replaceChildren(problemBox(error)); }
  } },
  h('label', {}, 'Name', h('input', { name: 'name', required: true })),
  h('label', {}, 'Mode', h('select', { name: 'mode' }, h('option', { value: 'continuous' }, 'continuous'), h('option', { value: 'one-time' }, 'one-time'))),
  h('label', {}, h('span', {}, h('input', { type: 'checkbox', name: 'emit' }), ' emit enabled')),
  h('label', {}, 'Query (JavaScript)', codeEditor('query', "fromAll()\n  .when({\n    $init: () => ({ count: 0 }),\n    $any: (state, event) => { state.count += 1; return state; }\n  });\n")),
  h('button', { type: 'submit', class: 'primary' }, 'Create'), out);
  clear(main, h('h1', {}, 'Projections'), list, h('h2', {}, 'Create a projection'), form);
  every(2000, signal, guard(list, async () => {
    const all = await api('/v1/projections', { signal });
    list.replaceChildren(all.length ? table(['Name', 'Status', 'Mode', 'Progress', 'Processed', 'Position'], all.map((p) => [
      h('a', { href: `#/projection/${enc(p.name)}` }, p.name), p.status + (p.stateReason ? ` (${p.stateReason})` : ''), p.mode, `${p.progress}%`, fmt(p.eventsProcessedAfterRestart), h('code', {}, p.position)]))
      : h('p', { class: 'muted' }, 'No projections yet.'));
  }));
}

export async function projection(main, params, signal) {
  const name = params.get('name');
  const path = `/v1/projections/${enc(name)}`;
  const p = await api(path, { signal });
  const status = h('div', { id: 'projection-status' });
  const state = h('div', { id: 'projection-state' });
  const result = h('div', { id: 'projection-result' });
  const out = h('div', { role: 'status' });
  const action = (label, verb, cls) => h('button', { class: cls, onclick: async () => {
    if (verb === 'delete' && !confirm(`Delete projection ${name}?`)) return;
    try {
      await api(verb === 'delete' ? path : `${path}/${verb}`, { method: verb === 'delete' ? 'DELETE' : 'POST' });
      if (verb === 'delete') go('#/projections'); else out.replaceChildren(h('p', { class: 'ok' }, `${label}: done.`));
    } catch (error) { out.replaceChildren(problemBox(error)); }
  } }, label);
  const form = h('form', { id: 'query-form', onsubmit: async (e) => {
    e.preventDefault();
    try { await api(`${path}/query`, { method: 'PUT', body: { query: new FormData(form).get('query') } }); out.replaceChildren(h('p', { class: 'ok' }, 'Query saved.')); } catch (error) { out.replaceChildren(problemBox(error)); }
  } }, codeEditor('query', p.query, { label: 'Query' }), h('button', { type: 'submit', class: 'primary' }, 'Save query'));
  clear(main, h('h1', {}, `Projection ${name}`), status,
    h('div', { class: 'toolbar' }, action('Enable', 'enable'), action('Disable', 'disable'), action('Reset', 'reset'), action('Delete…', 'delete', 'danger')), out,
    h('h2', {}, 'State'), state, h('h2', {}, 'Result'), result, h('h2', {}, 'Query'), form);
  every(1000, signal, guard(status, async () => {
    const [s, st, r] = await Promise.all([api(path, { signal }), api(`${path}/state`, { signal }), api(`${path}/result`, { signal })]);
    status.replaceChildren(h('p', {}, h('span', { class: 'pill' }, s.status), ` ${s.mode} · progress ${s.progress}% · ${fmt(s.eventsProcessedAfterRestart)} events processed · position `, h('code', {}, s.position),
      s.stateReason ? h('span', { class: 'error' }, ` ${s.stateReason}`) : null));
    state.replaceChildren(st === null ? h('p', { class: 'muted' }, 'No state yet.') : jsonView(st));
    result.replaceChildren(r === null ? h('p', { class: 'muted' }, 'No result yet.') : jsonView(r));
  }));
}

// ---------- Users ----------

export async function users(main, _params, signal) {
  const list = h('div', { id: 'users' });
  const out = h('div', { role: 'status', id: 'users-result' });
  const refresh = guard(list, async () => {
    const all = await api('/v1/users', { signal });
    list.replaceChildren(table(['Login', 'Full name', 'Groups', 'State', 'Actions'], all.map((u) => [
      u.loginName, u.fullName, u.groups.join(', '), u.disabled ? 'disabled' : 'enabled',
      h('span', { class: 'toolbar' },
        h('button', { onclick: () => userCommand(u.loginName, u.disabled ? 'enable' : 'disable') }, u.disabled ? 'Enable' : 'Disable'),
        h('button', { onclick: () => {
          const password = prompt(`New password for ${u.loginName}:`);
          if (password) userCommand(u.loginName, 'reset-password', { newPassword: password });
        } }, 'Reset password…'),
        h('button', { class: 'danger', onclick: async () => {
          if (!confirm(`Delete user ${u.loginName}?`)) return;
          try { await api(`/v1/users/${enc(u.loginName)}`, { method: 'DELETE' }); out.replaceChildren(h('p', { class: 'ok' }, `Deleted ${u.loginName}.`)); refresh(); } catch (error) { out.replaceChildren(problemBox(error)); }
        } }, 'Delete…'))])));
  });
  const userCommand = async (login, command, body) => {
    try {
      await api(`/v1/users/${enc(login)}/${command}`, { method: 'POST', body });
      out.replaceChildren(h('p', { class: 'ok' }, `${login}: ${command} done.`));
      refresh();
    } catch (error) { out.replaceChildren(problemBox(error)); }
  };
  const form = h('form', { id: 'user-form', class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const groups = f.get('groups').split(',').map((g) => g.trim()).filter(Boolean);
    try {
      await api(`/v1/users/${enc(f.get('login'))}`, { method: 'PUT', body: { fullName: f.get('fullName'), groups, password: f.get('password') } });
      out.replaceChildren(h('p', { class: 'ok' }, `Created ${f.get('login')}.`));
      form.reset();
      refresh();
    } catch (error) { out.replaceChildren(problemBox(error)); }
  } },
  h('label', {}, 'Login', h('input', { name: 'login', required: true, autocomplete: 'off' })),
  h('label', {}, 'Full name', h('input', { name: 'fullName', required: true })),
  h('label', {}, 'Groups (comma separated)', h('input', { name: 'groups' })),
  h('label', {}, 'Password', h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' })),
  h('button', { type: 'submit', class: 'primary' }, 'Create user'));
  clear(main, h('h1', {}, 'Users'), list, out, h('h2', {}, 'Create a user'), form);
  await refresh();
}
