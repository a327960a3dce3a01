// Strata's web UI in a real browser: playwright-core drives Debian's chromium (headless)
// against real `strata serve` processes. Run with scripts/test-ui.sh.
//
// Screenshots of each page go to $STRATA_UI_SCREENSHOTS (scripts/test-ui.sh --screenshots
// sets it to docs/ui); measurements are printed as `measure:` lines, never asserted.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, client } from './server.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.STRATA_UI_SCREENSHOTS;
const PAGED_EVENTS = Number(process.env.STRATA_UI_PAGED_EVENTS || 20_000);
const TAIL_RATE = Number(process.env.STRATA_UI_TAIL_RATE || 10_000);

let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
});
after(async () => { await browser?.close(); });

async function shot(page, name) {
  if (!SHOTS) return;
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, ignoreHTTPSErrors: true, colorScheme: 'light', ...options });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  // The browser logs every 4xx answer; the pages show those problems themselves.
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) errors.push(new Error(m.text())); });
  return { page, errors, close: () => context.close() };
}

function measure(what, value) { console.log(`measure: ${what}: ${value}`); }

// A webhook for an HTTP-sink connector: answers 200 to everything (the HEAD create sends
// too) and keeps each POSTed event.
function webhook() {
  const events = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      if (req.method === 'POST') events.push(JSON.parse(body));
      res.writeHead(200).end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}/events`,
    events,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  })));
}

async function until(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('insecure server', () => {
  let server; let api;
  before(async () => { server = await startServer(); api = client(server.base); });
  after(async () => { await server?.stop(); });

  test('the page is served embedded with its content types, caching headers and CSP', async () => {
    const index = await fetch(`${server.base}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type'), /^text\/html/);
    assert.match(index.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'/);
    assert.equal(index.headers.get('cache-control'), 'no-cache');
    const js = await fetch(`${server.base}/ui/app.js`);
    assert.match(js.headers.get('content-type'), /^text\/javascript/);
    const again = await fetch(`${server.base}/ui/app.js`, { headers: { 'If-None-Match': js.headers.get('etag') } });
    assert.equal(again.status, 304);
    const missing = await fetch(`${server.base}/ui/nothing.js`);
    assert.equal(missing.status, 404);
    assert.match(missing.headers.get('content-type'), /problem\+json/);
  });

  test('dashboard shows the node and live figures', async () => {
    const { page, errors, close } = await newPage();
    await page.goto(`${server.base}/`);
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.locator('#node').getByText('Store: engine').waitFor();
    await api('/v1/streams/dash-1', { method: 'POST', body: { events: Array.from({ length: 20 }, (_, i) => ({ type: 'Tick', data: { i } })) } });
    await page.waitForFunction(() => document.querySelector('[data-metric="log"]').textContent !== '–');
    // Each page of the navigation exists on this server (projections and connectors too:
    // serve runs them).
    for (const name of ['Dashboard', 'Streams', 'Live tail', 'Persistent subscriptions', 'Projections', 'Connectors', 'Scavenges']) {
      await page.getByRole('navigation').getByRole('link', { name }).waitFor();
    }
    await page.waitForTimeout(1500);
    await shot(page, 'dashboard');
    // Phone width: the page reflows without a horizontal scroll bar.
    await page.setViewportSize({ width: 390, height: 800 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `the dashboard scrolls sideways by ${overflow}px at phone width`);
    await shot(page, 'dashboard-phone');
    assert.deepEqual(errors, []);
    await close();
  });

  test('append from the form, then find the event in the stream browser', async () => {
    const { page, errors, close } = await newPage();
    await page.goto(`${server.base}/#/streams`);
    const form = page.locator('#append-form');
    await form.getByLabel('Stream').fill('order-42');
    await form.getByLabel('Event type').fill('OrderPlaced');
    await form.getByLabel('Data (JSON)').fill('{"total": 12.5, "items": ["book", "pen"], "gift": true}');
    await form.getByLabel('Metadata (JSON, optional)').fill('{"$correlationId": "c-1"}');
    await form.getByRole('button', { name: 'Append' }).click();
    await form.getByText('Appended to order-42 at revision 0').waitFor();
    // Found by prefix search, with its category and event type counted.
    await page.goto(`${server.base}/#/streams?prefix=order`);
    await page.locator('#stream-list').getByRole('link', { name: 'order-42' }).waitFor();
    await page.locator('#categories').getByRole('link', { name: 'order' }).waitFor();
    await page.locator('#types').getByRole('link', { name: 'OrderPlaced' }).waitFor();
    await shot(page, 'streams');
    await page.locator('#stream-list').getByRole('link', { name: 'order-42' }).click();
    await page.locator('#events-table').getByRole('cell', { name: 'OrderPlaced' }).waitFor();
    await shot(page, 'stream');
    await page.locator('#events-table').getByRole('link', { name: '0', exact: true }).click();
    await page.getByRole('heading', { name: 'order-42 @ 0' }).waitFor();
    // Pretty-printed and highlighted.
    const key = page.locator('pre.json .j-key', { hasText: '"items"' });
    await key.waitFor();
    assert.equal(await page.locator('pre.json .j-lit', { hasText: 'true' }).count(), 1);
    await page.locator('pre.json .j-str', { hasText: '"c-1"' }).waitFor();
    await shot(page, 'event');
    // A link in $ce-order resolves to the event; unresolved, its bytes show as hex.
    await page.goto(`${server.base}/#/stream/%24ce-order`);
    await page.locator('#events-table').getByRole('cell', { name: 'OrderPlaced (via link)' }).waitFor();
    await page.goto(`${server.base}/#/event/%24ce-order/0`);
    await page.getByText('Resolved from link $ce-order@0').waitFor();
    assert.deepEqual(errors, []);
    await close();
  });

  test('soft delete and tombstone ask for the stream\'s name', async () => {
    await api('/v1/streams/doomed-1', { method: 'POST', body: { events: [{ type: 'T', data: {} }] } });
    const { page, errors, close } = await newPage();
    await page.goto(`${server.base}/#/stream/doomed-1`);
    await page.locator('#events-table').waitFor();
    let answer = 'doomed-2';
    let asked = '';
    page.on('dialog', (dialog) => { asked = dialog.message(); dialog.accept(answer); });
    await page.getByRole('button', { name: 'Tombstone…' }).click();
    await page.getByText('Not deleted: the name typed did not match.').waitFor();
    assert.match(asked, /Tombstone stream "doomed-1"\?/);
    assert.equal((await api('/v1/streams/doomed-1')).events.length, 1, 'nothing deleted');
    answer = 'doomed-1';
    await page.getByRole('button', { name: 'Tombstone…' }).click();
    await page.getByText('Tombstoned doomed-1.').waitFor();
    const gone = await fetch(`${server.base}/v1/streams/doomed-1`);
    assert.equal(gone.status, 410);
    assert.deepEqual(errors, []);
    await close();
  });

  test('metadata edit with a wrong expected revision explains the conflict', async () => {
    await api('/v1/streams/meta-1', { method: 'POST', body: { events: [{ type: 'T', data: {} }] } });
    await api('/v1/streams/meta-1/metadata', { method: 'PUT', body: { $maxCount: 100 } });
    const { page, close } = await newPage();
    await page.goto(`${server.base}/#/stream/meta-1`);
    const form = page.locator('#metadata-form');
    await form.getByText('Metadata revision 0.').waitFor();
    // Someone else changes it meanwhile.
    await api('/v1/streams/meta-1/metadata', { method: 'PUT', body: { $maxCount: 50 } });
    await form.getByLabel('Metadata (JSON)').fill('{"$maxCount": 10}');
    await form.getByRole('button', { name: 'Save metadata' }).click();
    const conflict = page.locator('#metadata-conflict');
    await conflict.waitFor();
    assert.match(await conflict.textContent(), /expected revision 0, but the metadata stream is at revision 1/);
    await shot(page, 'metadata-conflict');
    const stored = await api('/v1/streams/meta-1/metadata');
    assert.equal(stored.metadata.$maxCount, 50, 'the refused edit wrote nothing');
    // With the right revision it saves.
    await form.getByLabel('Expected revision (empty: any)').fill('1');
    await form.getByRole('button', { name: 'Save metadata' }).click();
    await page.locator('#metadata-result').getByText('Saved as metadata revision 2').waitFor();
    await close();
  });

  test('the live tail shows an event appended by a client within a second', async () => {
    const { page, errors, close } = await newPage();
    await page.goto(`${server.base}/#/tail`);
    await page.getByRole('heading', { name: 'Live tail of $all' }).waitFor();
    // The subscription's answer has arrived (its head): events from now on reach the page.
    await page.locator('#tail[data-open="true"]').waitFor({ state: 'attached' });
    const started = Date.now();
    await api('/v1/streams/tail-live', { method: 'POST', body: { events: [{ type: 'Seen', data: { hello: 'tail' } }] } });
    await page.locator('#tail [data-stream="tail-live"]').waitFor({ timeout: 1000 });
    measure('live tail: client append to row shown (ms)', Date.now() - started);
    // Paused, it shows nothing new; resumed, it goes on.
    await page.getByRole('button', { name: 'Pause' }).click();
    await api('/v1/streams/tail-paused', { method: 'POST', body: { events: [{ type: 'Seen', data: {} }] } });
    await page.waitForTimeout(400);
    assert.equal(await page.locator('#tail [data-stream="tail-paused"]').count(), 0);
    await page.getByRole('button', { name: 'Resume' }).click();
    await api('/v1/streams/tail-resumed', { method: 'POST', body: { events: [{ type: 'Seen', data: {} }] } });
    await page.locator('#tail [data-stream="tail-resumed"]').waitFor({ timeout: 1000 });
    await shot(page, 'tail');
    // Filtered by stream prefix and following a correlation id.
    await page.goto(`${server.base}/#/tail?filter=streamPrefix&value=corr-&correlation=c-77`);
    await page.locator('#tail[data-open="true"]').waitFor({ state: 'attached' });
    await api('/v1/streams/corr-1', { method: 'POST', body: { events: [
      { type: 'Other', data: {}, metadata: { $correlationId: 'c-78' } },
      { type: 'Mine', data: {}, metadata: { $correlationId: 'c-77' } }] } });
    await api('/v1/streams/elsewhere', { method: 'POST', body: { events: [{ type: 'Mine', data: {}, metadata: { $correlationId: 'c-77' } }] } });
    await page.locator('#tail [data-stream="corr-1"]').waitFor({ timeout: 1000 });
    await page.waitForTimeout(300);
    assert.equal(await page.locator('#tail [data-stream]').count(), 1);
    assert.match(await page.locator('#tail [data-stream]').textContent(), /Mine/);
    assert.deepEqual(errors, []);
    await close();
  });

  test('a message parked by a client is replayed from the UI', async () => {
    await api('/v1/streams/parcel-1', { method: 'POST', body: { events: [{ type: 'Shipped', data: { n: 1 } }] } });
    await api('/v1/persistent-subscriptions/parcel-1/workers', { method: 'PUT', body: { startFrom: 'start' } });
    const first = await api('/v1/persistent-subscriptions/parcel-1/workers/messages?count=1&waitMs=5000');
    assert.equal(first.messages.length, 1);
    await api('/v1/persistent-subscriptions/parcel-1/workers/nack', { method: 'POST', body: { ids: [first.messages[0].ackId], action: 'park' } });
    const { page, errors, close } = await newPage();
    await page.goto(`${server.base}/#/persistent`);
    const row = page.locator('#groups tr', { hasText: 'workers' });
    await row.waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll('#groups td')].some((td) => td.textContent === 'RoundRobin'));
    await shot(page, 'persistent');
    await row.getByRole('link', { name: 'workers' }).click();
    await page.locator('#parked-count', { hasText: '1' }).waitFor();
    await page.locator('#parked').getByRole('link', { name: 'parcel-1@0' }).waitFor();
    await shot(page, 'persistent-group');
    await page.getByRole('button', { name: 'Replay parked messages' }).click();
    await page.locator('#replay-result').getByText('Parked messages sent back').waitFor();
    // The group delivers the event again.
    const again = await api('/v1/persistent-subscriptions/parcel-1/workers/messages?count=1&waitMs=5000');
    assert.equal(again.messages.length, 1);
    assert.equal(again.messages[0].event.stream, 'parcel-1');
    // Create a group from the form.
    await page.goto(`${server.base}/#/persistent`);
    const form = page.locator('#group-form');
    await form.getByLabel('Stream ($all for all)').fill('parcel-1');
    await form.getByLabel('Group', { exact: true }).fill('auditors');
    await form.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'Group auditors on parcel-1' }).waitFor();
    assert.equal((await api('/v1/persistent-subscriptions/parcel-1/auditors')).group, 'auditors');
    assert.deepEqual(errors, []);
    await close();
  });

  test('a projection created in the UI shows its state', async () => {
    await api('/v1/streams/count-1', { method: 'POST', body: { events: [{ type: 'Added', data: { n: 2 } }, { type: 'Added', data: { n: 3 } }] } });
    const { page, errors, close } = await newPage();
    await page.goto(`${server.base}/#/projections`);
    const form = page.locator('#projection-form');
    await form.getByLabel('Name').fill('sum');
    await form.getByLabel('Query (JavaScript)').fill(
      "// sums n\nfromStream('count-1').when({ $init: () => ({ total: 0 }), Added: (s, e) => { s.total += e.data.n; return s; } });");
    // The editor shows the same text, highlighted: a comment, a call, a string, a number.
    const editor = form.locator('.editor');
    await editor.locator('pre.code-hl .j-fn', { hasText: 'fromStream' }).waitFor();
    await editor.locator('pre.code-hl .j-str', { hasText: "'count-1'" }).waitFor();
    await editor.locator('pre.code-hl .j-com', { hasText: '// sums n' }).waitFor();
    await editor.locator('pre.code-hl .j-num', { hasText: '0' }).waitFor();
    assert.equal(await editor.locator('pre.code-hl').textContent(), `${await editor.locator('textarea').inputValue()}\n `);
    // Tab indents inside the editor.
    await editor.locator('textarea').press('End');
    await editor.locator('textarea').press('Tab');
    assert.match(await editor.locator('textarea').inputValue(), /; {2}$/);
    await form.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: 'Projection sum' }).waitFor();
    await page.locator('#projection-state .j-key', { hasText: '"total"' }).waitFor({ timeout: 15_000 });
    await page.locator('#projection-state .j-num', { hasText: '5' }).waitFor({ timeout: 15_000 });
    await shot(page, 'projection');
    await page.goto(`${server.base}/#/projections`);
    await page.locator('#projections').getByRole('link', { name: 'sum' }).waitFor();
    await shot(page, 'projections');
    assert.deepEqual(errors, []);
    await close();
  });

  test('connectors: created from a definition (errors shown), stopped, reset, started, settings, deleted', async () => {
    const hook = await webhook();
    after(() => hook.close());
    await api('/v1/streams/invoice-1', { method: 'POST', body: { events: [1, 2, 3].map((n) => ({ type: 'Billed', data: { n } })) } });
    const { page, errors, close } = await newPage();
    let answer = '';
    const asked = [];
    page.on('dialog', (dialog) => { asked.push(dialog.message()); dialog.accept(answer); });
    await page.goto(`${server.base}/#/connectors`);
    await page.getByRole('navigation').getByRole('link', { name: 'Connectors' }).waitFor();
    await page.locator('#connectors').getByText('No connectors yet.').waitFor();
    const form = page.locator('#connector-form');
    const definition = form.getByLabel('Definition (JSON)');
    const result = page.locator('#connector-create-result');
    // The server validates: not JSON, then an unknown sink type, each refused with the reason.
    await definition.fill('{"id": "ui-hook", ');
    await form.getByRole('button', { name: 'Create and start' }).click();
    await result.locator('.problem', { hasText: '(400)' }).waitFor();
    await definition.fill(JSON.stringify({ id: 'ui-hook', source: { kind: 'category', category: 'invoice' }, sink: { type: 'smtp', url: hook.url } }));
    await form.getByRole('button', { name: 'Create and start' }).click();
    await result.locator('.problem', { hasText: 'smtp' }).waitFor();
    assert.match(await result.textContent(), /\(400\)/);
    // The definition editor highlights JSON keys.
    await form.locator('pre.code-hl .j-key', { hasText: '"sink"' }).waitFor();
    assert.deepEqual((await api('/connectors')), [], 'nothing was created');
    // A valid one, with a secret header: created, started, publishing the category.
    await definition.fill(JSON.stringify({
      id: 'ui-hook', source: { kind: 'category', category: 'invoice' },
      sink: { type: 'http', url: hook.url, headers: { 'X-Token': 'hook-s3cret' } },
      settings: { start_from: 'start', checkpoint_interval_events: 1 },
    }, null, 2));
    await form.getByRole('button', { name: 'Create and start' }).click();
    await page.getByRole('heading', { name: 'Connector ui-hook' }).waitFor();
    await page.locator('#connector-status [data-state="running"]').waitFor();
    await page.locator('#connector-published', { hasText: '3' }).waitFor();
    await page.locator('#connector-lag', { hasText: '0 events' }).waitFor();
    await until('3 events at the webhook', () => hook.events.length === 3);
    assert.deepEqual(hook.events.map((e) => e.data.n), [1, 2, 3]);
    await page.locator('#connector-definition .j-str', { hasText: '"***"' }).waitFor();
    assert.equal(await page.getByText('hook-s3cret').count(), 0, 'the secret is never shown');
    await shot(page, 'connector');
    // Stop: the state says so and events appended meanwhile wait.
    await page.getByRole('button', { name: 'Stop' }).click();
    await page.locator('#connector-status [data-state="stopped"]').waitFor();
    assert.ok(await page.getByRole('button', { name: 'Start' }).isEnabled());
    await api('/v1/streams/invoice-1', { method: 'POST', body: { events: [{ type: 'Billed', data: { n: 4 } }] } });
    // Reset to the start (confirmed), start: everything is published again, in order.
    await page.locator('#reset-form').getByLabel('Reset to').selectOption('start');
    await page.locator('#reset-form').getByRole('button', { name: 'Reset…' }).click();
    await page.locator('#connector-result').getByText('Reset: done.').waitFor();
    assert.match(asked.at(-1), /Reset connector ui-hook to the start\?/);
    assert.equal(hook.events.length, 3, 'nothing is published while stopped');
    await page.getByRole('button', { name: 'Start' }).click();
    await page.locator('#connector-status [data-state="running"]').waitFor();
    await until('the re-sent events at the webhook', () => hook.events.length === 7);
    assert.deepEqual(hook.events.slice(3).map((e) => e.data.n), [1, 2, 3, 4]);
    // Settings: a bad value is refused with the reason; a good one is saved and shown.
    const settings = page.locator('#settings-form').getByLabel('Settings (JSON)');
    await settings.fill('{"batch_events_max": "many"}');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#connector-result .problem', { hasText: '(400)' }).waitFor();
    await settings.fill('{"start_from": "start", "batch_events_max": 16}');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('#connector-result').getByText('Settings saved').waitFor();
    await page.locator('#connector-definition').getByText('16').waitFor();
    assert.equal((await api('/connectors/ui-hook')).definition.settings.batch_events_max, 16);
    // Transform: one that does not compile is refused with the reason; a good one renames
    // the events the webhook gets (a reset re-sends them through it).
    const transform = page.locator('#transform-form').getByLabel('Transform (JavaScript)');
    await transform.fill('(e) => {');
    await page.getByRole('button', { name: 'Save transform' }).click();
    await page.locator('#connector-result .problem', { hasText: 'the transform does not compile' }).waitFor();
    await transform.fill('(e) => ({ type: "Invoiced", data: { n: e.data.n * 10 } })');
    await page.getByRole('button', { name: 'Save transform' }).click();
    await page.locator('#connector-result').getByText('Transform saved').waitFor();
    await page.locator('#reset-form').getByLabel('Reset to').selectOption('start');
    await page.locator('#reset-form').getByRole('button', { name: 'Reset…' }).click();
    await until('the transformed events at the webhook', () => hook.events.length === 11);
    assert.deepEqual(hook.events.slice(7).map((e) => [e.type, e.data.n]), [['Invoiced', 10], ['Invoiced', 20], ['Invoiced', 30], ['Invoiced', 40]]);
    // The list: state, lag and counters.
    await page.goto(`${server.base}/#/connectors`);
    const row = page.locator('#connectors-table tr', { hasText: 'ui-hook' });
    await row.locator('[data-state="running"]').waitFor();
    await row.getByRole('cell', { name: 'http', exact: true }).waitFor();
    await shot(page, 'connectors');
    // Delete asks for the id: a wrong one deletes nothing, the right one deletes.
    await row.getByRole('link', { name: 'ui-hook' }).click();
    await page.getByRole('heading', { name: 'Connector ui-hook' }).waitFor();
    answer = 'ui-hoo';
    await page.getByRole('button', { name: 'Delete…' }).click();
    await page.locator('#connector-result').getByText('Not deleted').waitFor();
    assert.equal((await api('/connectors')).length, 1);
    answer = 'ui-hook';
    await page.getByRole('button', { name: 'Delete…' }).click();
    await page.locator('#connectors').getByText('No connectors yet.').waitFor();
    assert.equal((await fetch(`${server.base}/connectors/ui-hook`)).status, 404);
    assert.deepEqual(errors, []);
    await close();
  });

  test('scavenges: start after a confirmation, from the keyboard, and see the run finish', async () => {
    // Something for the scavenge to look at: a stream, then its tombstone.
    await api('/v1/streams/scav-1', { method: 'POST', body: { events: Array.from({ length: 50 }, (_, i) => ({ type: 'Old', data: { i } })) } });
    await api('/v1/streams/scav-1?mode=tombstone', { method: 'DELETE' });
    const { page, errors, close } = await newPage();
    const asked = [];
    let accept = false;
    page.on('dialog', (dialog) => { asked.push(dialog.message()); if (accept) dialog.accept(); else dialog.dismiss(); });
    await page.goto(`${server.base}/`);
    // The store behind `strata serve --data-dir` can scavenge: the page is in the navigation.
    await page.getByRole('navigation').getByRole('link', { name: 'Scavenges' }).click();
    await page.getByRole('heading', { name: 'Scavenges' }).waitFor();
    await page.locator('#scavenge-current').getByText('No scavenge is running.').waitFor();
    await page.locator('#scavenge-history').getByText('None since the server started.').waitFor();
    const form = page.locator('#scavenge-form');
    // Keyboard: type the throttle and press Enter; the confirmation names it; dismissed,
    // nothing starts.
    await form.getByLabel('Throttle (% of the time working)').fill('90');
    await form.getByLabel('Throttle (% of the time working)').press('Enter');
    await page.locator('#scavenge-result').getByText('Not started.').waitFor();
    assert.match(asked.at(-1), /Start a scavenge at 90% throttle from segment 0\?/);
    assert.equal((await api('/v1/admin/scavenges')).history.length, 0);
    assert.equal((await api('/v1/admin/scavenges')).current, null);
    // Accepted (Tab to the button, Enter): started, and it shows in the list once finished.
    accept = true;
    await form.getByLabel('From segment').focus();
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.locator('#scavenge-result').getByText(/Started scavenge /).waitFor();
    const id = (await page.locator('#scavenge-result').textContent()).match(/Started scavenge (\S+)\./)[1];
    const row = page.locator('#scavenges-table tr', { hasText: id });
    await row.locator('[data-state="completed"]').waitFor();
    await page.locator('#scavenge-current').getByText('No scavenge is running.').waitFor();
    const listed = await api('/v1/admin/scavenges');
    assert.equal(listed.history[0].id, id);
    assert.equal(listed.history[0].throttle_percent, 90);
    assert.equal(listed.history[0].state, 'completed');
    await shot(page, 'scavenges');
    assert.deepEqual(errors, []);
    await close();
  });

  test('measure: paging a long stream and the tail at a high rate', async () => {
    // The stream: appended through the API in batches (scripts/test-ui.sh --bench makes it
    // 1,000,000 events; CI uses a smaller one).
    const batch = 2000;
    const t0 = Date.now();
    for (let written = 0; written < PAGED_EVENTS; written += batch) {
      const n = Math.min(batch, PAGED_EVENTS - written);
      await api('/v1/streams/long-1', { method: 'POST', body: { events: Array.from({ length: n }, (_, i) => ({ type: 'Row', data: { i: written + i } })) } });
    }
    measure(`append ${PAGED_EVENTS} events over HTTP (s)`, ((Date.now() - t0) / 1000).toFixed(1));
    const { page, errors, close } = await newPage();
    let t = Date.now();
    await page.goto(`${server.base}/#/stream/long-1`);
    await page.locator('#events-table').getByRole('link', { name: String(PAGED_EVENTS - 1), exact: true }).waitFor();
    measure(`open a stream of ${PAGED_EVENTS} events at its end (ms, page load included)`, Date.now() - t);
    const pages = [];
    for (let i = 0; i < 10; i++) {
      const expected = String(PAGED_EVENTS - 1 - 50 * (i + 1));
      t = performance.now();
      await page.locator('#older').click();
      await page.locator('#events-table').getByRole('link', { name: expected, exact: true }).waitFor();
      pages.push(performance.now() - t);
    }
    for (let i = 0; i < 3; i++) {
      t = performance.now();
      await page.locator('#newer').click();
      await page.locator('#events-table').getByRole('link', { name: String(PAGED_EVENTS - 1 - 50 * (9 - i)), exact: true }).waitFor();
      pages.push(performance.now() - t);
    }
    pages.sort((a, b) => a - b);
    measure('page of 50 events, click to rows drawn (ms, median / max of 13)', `${pages[6].toFixed(0)} / ${pages[12].toFixed(0)}`);
    // Baseline, same run: the same pages read by a plain HTTP client (no browser).
    const raw = [];
    for (let i = 0; i < 13; i++) {
      t = performance.now();
      await api(`/v1/streams/long-1?direction=backwards&from=${PAGED_EVENTS - 1 - 50 * i}&count=50&resolveLinks=true`);
      raw.push(performance.now() - t);
    }
    raw.sort((a, b) => a - b);
    measure('baseline: the same page read by a plain HTTP client (ms, median / max of 13)', `${raw[6].toFixed(1)} / ${raw[12].toFixed(1)}`);
    const serverTimes = await page.locator('#page-timing').textContent();
    measure('last page as the page timed it', serverTimes);

    // The tail at TAIL_RATE events/s for 5 s: the page must stay responsive (frame gaps).
    await page.goto(`${server.base}/#/tail`);
    await page.locator('#tail[data-open="true"]').waitFor({ state: 'attached' });
    await page.evaluate(() => {
      window.__gaps = [];
      let last = performance.now();
      const tick = (now) => { window.__gaps.push(now - last); last = now; window.__raf = requestAnimationFrame(tick); };
      window.__raf = requestAnimationFrame(tick);
    });
    const per = Math.max(1, Math.round(TAIL_RATE / 20));
    const start = Date.now();
    let sent = 0;
    while (Date.now() - start < 5000) {
      const tickStart = Date.now();
      await api('/v1/streams/fast-1', { method: 'POST', body: { events: Array.from({ length: per }, (_, i) => ({ type: 'Fast', data: { i: sent + i } })) } });
      sent += per;
      const wait = 50 - (Date.now() - tickStart);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const seconds = (Date.now() - start) / 1000;
    await page.waitForTimeout(1500);
    const gaps = await page.evaluate(() => { cancelAnimationFrame(window.__raf); return window.__gaps.slice(1); });
    gaps.sort((a, b) => a - b);
    const rate = await page.locator('#tail-rate').textContent();
    const received = Number(rate.match(/([\d,]+) received/)[1].replace(/,/g, ''));
    measure('tail: events appended / s (client side)', (sent / seconds).toFixed(0));
    measure('tail: events received by the page / appended', `${received} / ${sent}`);
    measure('tail: frame gap p50 / p99 / max (ms)', `${gaps[Math.floor(gaps.length / 2)].toFixed(0)} / ${gaps[Math.floor(gaps.length * 0.99)].toFixed(0)} / ${gaps[gaps.length - 1].toFixed(0)}`);
    assert.equal(received, sent, 'the page received every event of the tail');
    assert.deepEqual(errors, []);
    await close();
  });
});

describe('secure server', () => {
  let server; let admin;
  before(async () => { server = await startServer({ secure: true }); admin = client(server.base, 'admin', 'changeit'); });
  after(async () => { await server?.stop(); });

  test('login, and a user without read access cannot see a stream\'s events', async () => {
    await admin('/v1/streams/secret-1', { method: 'POST', body: { events: [{ type: 'Classified', data: { code: 'xyzzy' } }] } });
    await admin('/v1/streams/secret-1/metadata', { method: 'PUT', body: { $acl: { $r: '$admins', $w: '$admins' } } });
    await admin('/v1/streams/open-1', { method: 'POST', body: { events: [{ type: 'Public', data: { hello: 1 } }] } });
    const { page, close } = await newPage();
    await page.goto(`${server.base}/#/stream/secret-1`);
    const dialog = page.getByRole('dialog', { name: 'Log in' });
    await dialog.waitFor();
    await shot(page, 'login');
    // A wrong password is refused.
    await dialog.getByLabel('User').fill('ops');
    await dialog.getByLabel('Password').fill('wrong');
    await dialog.getByRole('button', { name: 'Log in' }).click();
    await dialog.getByText('Wrong user name or password.').waitFor();
    await dialog.getByLabel('User').fill('ops');
    await dialog.getByLabel('Password').fill('changeit');
    await dialog.getByRole('button', { name: 'Log in' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await page.getByText('ops', { exact: false }).first().waitFor();
    // ops may read open-1 but not secret-1.
    await page.locator('.problem', { hasText: 'access' }).first().waitFor();
    assert.equal(await page.locator('#events-table').count(), 0);
    assert.equal(await page.getByText('xyzzy').count(), 0);
    await shot(page, 'access-denied');
    await page.goto(`${server.base}/#/stream/open-1`);
    await page.locator('#events-table').getByRole('cell', { name: 'Public' }).waitFor();
    // Nor does the secret event show in the live tail or $all-based lists.
    await page.goto(`${server.base}/#/event/secret-1/0`);
    await page.locator('.problem').first().waitFor();
    assert.equal(await page.getByText('xyzzy').count(), 0);
    // The password is nowhere in the browser's storage.
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
    assert.ok(!stored.includes('changeit') && !stored.includes(Buffer.from('ops:changeit').toString('base64')));
    // admin sees it (after logging out and in again).
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.goto(`${server.base}/#/stream/secret-1`);
    await dialog.waitFor();
    await dialog.getByLabel('User').fill('admin');
    await dialog.getByLabel('Password').fill('changeit');
    await dialog.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#events-table').getByRole('cell', { name: 'Classified' }).waitFor();
    // admin manages users: create one, disable it (its credentials stop working).
    await page.goto(`${server.base}/#/users`);
    const form = page.locator('#user-form');
    await form.getByLabel('Login').fill('reader');
    await form.getByLabel('Full name').fill('Read Only');
    await form.getByLabel('Groups (comma separated)').fill('readers');
    await form.getByLabel('Password').fill('s3cret');
    await form.getByRole('button', { name: 'Create user' }).click();
    const row = page.locator('#users tr', { hasText: 'reader' });
    await row.getByRole('cell', { name: 'enabled' }).waitFor();
    assert.equal((await client(server.base, 'reader', 's3cret')('/v1/streams/open-1')).events.length, 1);
    await shot(page, 'users');
    await row.getByRole('button', { name: 'Disable' }).click();
    await row.getByRole('cell', { name: 'disabled' }).waitFor();
    await assert.rejects(client(server.base, 'reader', 's3cret')('/v1/streams/open-1'), /401/);
    await close();
  });

  test('connectors need the Operations right: a plain user sees the API\'s 403, ops manages', async () => {
    await admin('/v1/users/plain', { method: 'PUT', body: { fullName: 'Plain', groups: [], password: 'plainpw' } });
    const { page, errors, close } = await newPage();
    await page.goto(`${server.base}/#/connectors`);
    const dialog = page.getByRole('dialog', { name: 'Log in' });
    await dialog.waitFor();
    await dialog.getByLabel('User').fill('plain');
    await dialog.getByLabel('Password').fill('plainpw');
    await dialog.getByRole('button', { name: 'Log in' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await page.locator('#connectors .problem', { hasText: '(403)' }).waitFor();
    assert.equal(await page.locator('#connectors-table').count(), 0);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.goto(`${server.base}/#/connectors?again`);
    await dialog.waitFor();
    await dialog.getByLabel('User').fill('ops');
    await dialog.getByLabel('Password').fill('changeit');
    await dialog.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#connectors').getByText('No connectors yet.').waitFor();
    assert.deepEqual(errors, []);
    await close();
  });
});
