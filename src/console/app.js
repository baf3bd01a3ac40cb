// The Meterline operator console: a hash router over small page modules. No framework, no bundler.

import { api, session, whenUnauthorized } from './api.js';
import { fill, h } from './dom.js';
import { onLiveState, startLive, stopLive } from './live.js';
import * as signin from './pages/signin.js';
import * as overview from './pages/overview.js';
import * as orders from './pages/orders.js';
import * as workOrders from './pages/work-orders.js';
import * as meters from './pages/meters.js';
import * as plans from './pages/plans.js';
import * as order from './pages/order.js';
import * as alerts from './pages/alerts.js';
import * as breakers from './pages/breakers.js';
import * as links from './pages/links.js';
import * as audit from './pages/audit.js';
import * as apiKeys from './pages/api-keys.js';

/** [pattern, module, page name] — the first match wins. */
const ROUTES = [
  [/^\/signin$/, signin, 'signin'],
  [/^\/overview$/, overview, 'overview'],
  [/^\/orders$/, orders, 'orders'],
  [/^\/orders\/(?<orderId>[^/]+)$/, order, 'orders'],
  [/^\/work-orders$/, workOrders, 'work-orders'],
  [/^\/meters(?:\/(?<meterId>[^/]+))?$/, meters, 'meters'],
  [/^\/plans(?:\/(?<planId>[^/]+))?$/, plans, 'plans'],
  [/^\/alerts$/, alerts, 'alerts'],
  [/^\/breakers$/, breakers, 'breakers'],
  [/^\/links$/, links, 'links'],
  [/^\/audit$/, audit, 'audit'],
  [/^\/keys$/, apiKeys, 'keys'],
];

const main = document.getElementById('main');
let cleanup = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/overview';
  const [path, query = ''] = raw.split('?');
  return { path, query: new URLSearchParams(query) };
}

/** Go to a console route, e.g. navigate('/meters/M-1'). */
export function navigate(path) {
  location.hash = `#${path}`;
}

async function ensureSignedIn() {
  if (!session.key) return false;
  if (session.who) return true;
  try {
    session.who = await api('/v1/whoami');
    showChrome();
    startLive();
    return true;
  } catch (err) {
    if (err.status === 401) session.key = null;
    return false;
  }
}

function showChrome() {
  const who = session.who;
  document.getElementById('nav').hidden = !who;
  document.getElementById('who').hidden = !who;
  if (!who) return;
  document.getElementById('who-name').textContent = who.name;
  document.getElementById('who-role').textContent = who.role;
  for (const a of document.querySelectorAll('#nav a[data-needs]')) a.parentElement.hidden = !session.can(a.dataset.needs);
}

export function signOut() {
  session.key = null;
  session.who = null;
  stopLive();
  showChrome();
  navigate('/signin');
}

async function route() {
  const { path, query } = parseHash();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const signedIn = await ensureSignedIn();
  if (!signedIn && path !== '/signin') return navigate('/signin');
  if (signedIn && path === '/signin') return navigate('/overview');
  const match = ROUTES.map(([re, mod, name]) => ({ m: re.exec(path), mod, name })).find((r) => r.m);
  for (const a of document.querySelectorAll('#nav a')) {
    if (match && a.dataset.page === match.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!match) {
    fill(main, h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. ', h('a', { href: '#/overview' }, 'Go to the overview.')));
    return;
  }
  fill(main);
  const params = Object.fromEntries(Object.entries(match.m.groups ?? {}).filter(([, v]) => v !== undefined).map(([k, v]) => [k, decodeURIComponent(v)]));
  try {
    cleanup = (await match.mod.render(main, { params, query, navigate, signedIn: () => showChrome() })) ?? null;
  } catch (err) {
    fill(main, h('h1', {}, 'Something went wrong'), h('div.error', { role: 'alert' }, h('strong', {}, err.code ?? 'Error'), ': ', err.message));
  }
  // Move focus to the page heading so keyboard and screen-reader users start at the new content.
  const heading = main.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
    document.title = `${heading.textContent} · Meterline console`;
  }
}

whenUnauthorized(() => {
  session.key = null;
  session.who = null;
  stopLive();
  showChrome();
  navigate('/signin');
});

document.getElementById('sign-out').addEventListener('click', signOut);
onLiveState((s) => {
  const el = document.getElementById('live-state');
  el.textContent = `live: ${s}`;
  el.dataset.state = s;
});
window.addEventListener('hashchange', () => void route());
void route();
