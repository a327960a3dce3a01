// Talks to the HTTP API of the server that served the page (docs/HTTP.md).
//
// Credentials: on a secure server the user logs in once per tab; the Basic token lives only
// in this module's memory (never in localStorage, sessionStorage or a cookie), so closing or
// reloading the tab forgets it. Requests use `credentials: 'omit'` so the browser never
// shows its own Basic prompt and never attaches credentials on its own.

let token = null;
let user = null;
let onUnauthenticated = () => {};

export function setUnauthenticatedHandler(handler) { onUnauthenticated = handler; }
export function currentUser() { return user; }

export function login(name, password) {
  const bytes = new TextEncoder().encode(`${name}:${password}`);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  token = `Basic ${btoa(binary)}`;
  user = name;
}

export function logout() { token = null; user = null; }

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headersFor(extra) {
  const headers = { ...extra };
  if (token) headers.Authorization = token;
  return headers;
}

export async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const h = headersFor(headers);
  let payload = body;
  if (body !== undefined && typeof body !== 'string') {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  } else if (typeof body === 'string' && !h['Content-Type']) {
    h['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, { method, body: payload, headers: h, signal, credentials: 'omit', cache: 'no-store' });
  if (!response.ok) {
    let problem;
    try { problem = await response.json(); } catch { problem = { title: response.statusText, status: response.status }; }
    if (response.status === 401) onUnauthenticated();
    throw new ApiError(response.status, problem);
  }
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

// Reads an NDJSON subscription, calling `onBatch(items)` with every line read in one chunk
// from the network (so a fast stream is handled in batches, not one call per event).
export async function subscribe(path, onBatch, signal, onOpen = () => {}) {
  const response = await fetch(path, {
    headers: headersFor({ Accept: 'application/x-ndjson' }), signal, credentials: 'omit', cache: 'no-store',
  });
  if (!response.ok) {
    let problem;
    try { problem = await response.json(); } catch { problem = { title: response.statusText } }
    if (response.status === 401) onUnauthenticated();
    throw new ApiError(response.status, problem);
  }
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const lines = (rest + value).split('\n');
    rest = lines.pop();
    const items = [];
    for (const line of lines) if (line) items.push(JSON.parse(line));
    if (items.length) onBatch(items);
  }
}

export const enc = encodeURIComponent;
