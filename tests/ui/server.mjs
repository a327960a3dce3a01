// Starts a real `strata serve` on a free loopback port over a fresh data directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// `secure`: `--dev` (TLS with a generated certificate, users and ACLs, admin/ops:changeit);
// else `--insecure`.
export async function startServer({ secure = false, dataDir } = {}) {
  const bin = process.env.STRATA_BIN;
  if (!bin) throw new Error('STRATA_BIN must name the strata binary (scripts/test-ui.sh sets it)');
  const dir = dataDir || mkdtempSync(join(tmpdir(), 'strata-ui-'));
  const port = await freePort();
  const args = ['serve', '--data-dir', dir, '--port', String(port), '--bind', '127.0.0.1', '--log-level', 'warn',
    '--segment-size-mib', '64', secure ? '--dev' : '--insecure'];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const base = `${secure ? 'https' : 'http'}://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`strata serve exited ${child.exitCode}: ${stderr}`);
    try {
      const r = await fetch(`${base}/health/live`);
      if (r.status === 204) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) { child.kill(); throw new Error(`strata serve did not answer within 30 s: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    port,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A small HTTP client of the API (Node's fetch; TLS checks off for the dev certificate).
export function client(base, user, password) {
  const auth = user ? { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } : {};
  return async function call(path, { method = 'GET', body } = {}) {
    const headers = { ...auth };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    const json = text ? JSON.parse(text) : null;
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return json;
  };
}
