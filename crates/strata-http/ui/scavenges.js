// The scavenges page (docs/SCAVENGING.md): the run under way with its progress, start one
// (throttle, first segment; after a confirmation), stop it (after a confirmation), the last
// runs finished and automatic scavenging. Everything goes through `/v1/admin/scavenges`
// (docs/HTTP.md), which needs the Operations right: other users see the API's 403.
import { api } from './api.js';
import { h, clear, problemBox, fmt, bytes } from './view.js';
import { every, guard, table } from './pages.js';

function when(ms) { return ms ? new Date(ms).toLocaleString() : '–'; }

function statePill(job) {
  const kind = { running: 'running', failed: 'retrying' }[job.state] || '';
  return h('span', { class: `pill ${kind}`, 'data-state': job.state }, job.state);
}

function percent(p) {
  return p.bytes_total ? Math.min(100, Math.floor((100 * p.bytes_done) / p.bytes_total)) : 0;
}

function progressOf(job) {
  const p = job.progress;
  return h('span', {},
    h('progress', { max: 100, value: percent(p), 'aria-label': `Scavenge ${job.id} progress` }),
    ` ${percent(p)}% · ${bytes(p.bytes_done)} of ${bytes(p.bytes_total)} · segments ${fmt(p.segments_done)}/${fmt(p.segments_total)}`);
}

export async function scavenges(main, _params, signal) {
  const current = h('div', { id: 'scavenge-current' });
  const history = h('div', { id: 'scavenge-history' });
  const automatic = h('div', { id: 'scavenge-automatic' });
  const out = h('div', { role: 'status', id: 'scavenge-result' });
  let refresh = () => {};
  const throttle = h('input', { name: 'throttle_percent', type: 'number', min: 1, max: 100, value: '100', required: true });
  const segment = h('input', { name: 'start_from_segment', type: 'number', min: 0, value: '0', required: true });
  const form = h('form', { id: 'scavenge-form', class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    const body = { throttle_percent: Number(throttle.value), start_from_segment: Number(segment.value) };
    if (!confirm(`Start a scavenge at ${body.throttle_percent}% throttle from segment ${body.start_from_segment}? ` +
      'It rewrites sealed segments without deleted and expired events; reads go on meanwhile.')) {
      out.replaceChildren(h('p', { class: 'muted' }, 'Not started.'));
      return;
    }
    try {
      const started = await api('/v1/admin/scavenges', { method: 'POST', body });
      out.replaceChildren(h('p', { class: 'ok' }, started.result === 'started'
        ? `Started scavenge ${started.id}.` : `A scavenge is already under way: ${started.id}.`));
      refresh();
    } catch (error) { out.replaceChildren(problemBox(error)); }
  } },
  h('label', {}, 'Throttle (% of the time working)', throttle),
  h('label', {}, 'From segment', segment),
  h('button', { type: 'submit', class: 'primary' }, 'Start scavenge…'));

  const stop = async (job) => {
    if (!confirm(`Stop scavenge ${job.id}? It stops after the segment under way; a later run goes on from there.`)) return;
    try {
      await api('/v1/admin/scavenges/current', { method: 'DELETE' });
      out.replaceChildren(h('p', { class: 'ok' }, `Stopping scavenge ${job.id} after the segment under way.`));
      refresh();
    } catch (error) { out.replaceChildren(problemBox(error)); }
  };

  clear(main, h('h1', {}, 'Scavenges'),
    h('p', { class: 'muted' }, 'A scavenge reclaims the space of deleted, truncated and expired events. ',
      'Running one needs the Operations right ($admins, $ops). Refreshed every second.'),
    h('h2', {}, 'Under way'), current, out,
    h('h2', {}, 'Start a scavenge'), form,
    h('h2', {}, 'Finished'), history,
    h('h2', {}, 'Automatic scavenging'), automatic);

  const draw = (all) => {
    if (!all.supported) {
      form.querySelector('button').disabled = true;
      current.replaceChildren(h('p', { class: 'muted' }, 'This store cannot scavenge.'));
    } else if (all.current) {
      const job = all.current;
      current.replaceChildren(h('table', {}, h('tbody', {}, [
        ['Id', h('code', {}, job.id)], ['State', statePill(job)], ['Trigger', job.trigger],
        ['Requested by', job.requested_by || '–'], ['Throttle', `${job.throttle_percent}%`],
        ['Progress', progressOf(job)],
        ['Events removed', fmt(job.progress.events_removed)], ['Bytes removed', bytes(job.progress.frame_bytes_removed)],
        ['Started', when(job.started_at_unix_ms)],
      ].map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))),
      h('div', { class: 'toolbar' }, h('button', { class: 'danger', id: 'scavenge-stop', onclick: () => stop(job) }, 'Stop…')));
    } else {
      current.replaceChildren(h('p', { class: 'muted' }, 'No scavenge is running.'));
    }
    history.replaceChildren(all.history.length
      ? table(['Id', 'State', 'Trigger', 'By', 'Started', 'Finished', 'Scanned', 'Segments', 'Events removed', 'Bytes removed', 'Error'],
        all.history.map((job) => [h('code', {}, job.id), statePill(job), job.trigger, job.requested_by || '–',
          when(job.started_at_unix_ms), when(job.finished_at_unix_ms), bytes(job.progress.bytes_done),
          `${fmt(job.progress.segments_done)}/${fmt(job.progress.segments_total)}`,
          fmt(job.progress.events_removed), bytes(job.progress.frame_bytes_removed),
          job.error ? h('span', { class: 'error' }, job.error) : '–']), { id: 'scavenges-table' })
      : h('p', { class: 'muted' }, 'None since the server started.'));
    const auto = all.automatic;
    automatic.replaceChildren(auto
      ? h('table', {}, h('tbody', {}, [
        ['Schedule', auto.schedule], ['Next run', when(auto.next_run_unix_ms)],
        ['Runs started', fmt(auto.runs_started)], ['Runs skipped', fmt(auto.runs_skipped)],
        ['Last decision', auto.last_decision || '–'],
      ].map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))))
      : h('p', { class: 'muted' }, 'Off (see docs/SCAVENGING.md to schedule it).'));
  };
  draw(await api('/v1/admin/scavenges', { signal }));
  refresh = guard(current, async () => draw(await api('/v1/admin/scavenges', { signal })));
  every(1000, signal, refresh);
}
