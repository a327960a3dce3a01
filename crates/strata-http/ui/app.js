// The router: hash routes (#/stream/<name>...), the navigation of the pages the server
// has, and the login dialog on secure servers.
import { api, login, logout, currentUser, setUnauthenticatedHandler } from './api.js';
import { h, clear, problemBox } from './view.js';
import * as pages from './pages.js';
import * as connectorPages from './connectors.js';
import * as scavengePages from './scavenges.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const dialog = document.getElementById('login');
const loginForm = document.getElementById('login-form');
const loginError = document.getElementById('login-error');

let features = [];
let current = null;

// Each route: pattern → page, parameters by position; `feature` hides it when the server
// does not have it.
const routes = [
  { path: /^\/?$/, page: pages.dashboard, nav: 'Dashboard', href: '#/' },
  { path: /^\/streams$/, page: pages.streams, nav: 'Streams', href: '#/streams' },
  { path: /^\/stream\/([^/]+)$/, page: pages.stream, names: ['name'], section: '#/streams' },
  { path: /^\/event\/([^/]+)\/(\d+)$/, page: pages.event, names: ['name', 'revision'], section: '#/streams' },
  { path: /^\/tail$/, page: pages.tail, nav: 'Live tail', href: '#/tail' },
  { path: /^\/persistent$/, page: pages.persistent, nav: 'Persistent subscriptions', href: '#/persistent', feature: 'persistent-subscriptions' },
  { path: /^\/persistent\/([^/]+)\/([^/]+)$/, page: pages.group, names: ['stream', 'group'], section: '#/persistent', feature: 'persistent-subscriptions' },
  { path: /^\/projections$/, page: pages.projections, nav: 'Projections', href: '#/projections', feature: 'projections' },
  { path: /^\/projection\/([^/]+)$/, page: pages.projection, names: ['name'], section: '#/projections', feature: 'projections' },
  { path: /^\/connectors$/, page: connectorPages.connectors, nav: 'Connectors', href: '#/connectors', feature: 'connectors' },
  { path: /^\/connector\/([^/]+)$/, page: connectorPages.connector, names: ['id'], section: '#/connectors', feature: 'connectors' },
  { path: /^\/scavenges$/, page: scavengePages.scavenges, nav: 'Scavenges', href: '#/scavenges', feature: 'scavenges' },
  { path: /^\/users$/, page: pages.users, nav: 'Users', href: '#/users', feature: 'users' },
];

function available(route) { return !route.feature || features.includes(route.feature); }

function drawNav(active) {
  nav.replaceChildren(...routes.filter((r) => r.nav && available(r)).map((r) =>
    h('a', { href: r.href, 'aria-current': r.href === active ? 'page' : null }, r.nav)));
  who.replaceChildren(currentUser()
    ? h('span', {}, `${currentUser()} `, h('button', { type: 'button', onclick: () => { logout(); render(); } }, 'Log out'))
    : '');
}

async function render() {
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const params = new URLSearchParams(query);
  const route = routes.find((r) => r.path.test(path) && available(r));
  if (!route) { drawNav(null); clear(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Dashboard'))); return; }
  const match = path.match(route.path);
  (route.names || []).forEach((n, i) => params.set(n, decodeURIComponent(match[i + 1])));
  drawNav(route.href || route.section);
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    await route.page(main, params, signal);
  } catch (error) {
    if (error.name === 'AbortError' || signal.aborted) return;
    if (error.status === 401) return; // the login dialog is open
    clear(main, problemBox(error));
  }
  if (!signal.aborted) document.title = `Strata · ${main.querySelector('h1')?.textContent || ''}`;
}

setUnauthenticatedHandler(() => {
  if (!dialog.open) { loginError.textContent = currentUser() ? 'Those credentials were refused.' : ''; dialog.showModal(); }
});

loginForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const data = new FormData(loginForm);
  login(data.get('user'), data.get('password'));
  try {
    // Any authenticated user may read /info: a 401 here means the credentials are wrong.
    await api('/info');
    await fetchProbe();
    loginForm.reset();
    dialog.close();
    render();
  } catch (error) {
    logout();
    loginError.textContent = error.status === 401 ? 'Wrong user name or password.' : error.message;
  }
});

// Checks the credentials against an endpoint that needs authentication on a secure server.
async function fetchProbe() {
  try { await api('/v1/streams/%24ui-login-probe?count=1'); } catch (error) {
    if (error.status === 401) throw error;
  }
}

addEventListener('hashchange', render);

// Connectors are routes `strata serve` mounts beside the API (docs/HTTP.md), not a feature
// /info lists: the page appears when /connectors exists, whatever it answers this caller
// (200, or 401/403 for who may not manage them) other than 404.
async function hasConnectors() {
  try {
    const response = await fetch('/connectors', { method: 'HEAD', credentials: 'omit', cache: 'no-store' });
    return response.status !== 404;
  } catch { return false; }
}

// Scavenge routes are mounted on every server; the page appears when the store behind can
// scavenge (or when this caller may not ask: 401/403, the page then shows the API's answer).
async function hasScavenges() {
  try {
    const response = await fetch('/v1/admin/scavenges', { credentials: 'omit', cache: 'no-store' });
    if (response.status === 404) return false;
    if (!response.ok) return true;
    return (await response.json()).supported === true;
  } catch { return false; }
}

try {
  const [info, connectors, scavenges] = await Promise.all([api('/info'), hasConnectors(), hasScavenges()]);
  features = [...(info.features || []), ...(connectors ? ['connectors'] : []), ...(scavenges ? ['scavenges'] : [])];
} catch (error) {
  main.replaceChildren(problemBox(error));
}
render();
