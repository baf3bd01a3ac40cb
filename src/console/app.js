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
/** The nav's items in the page's own order, before a role's landing page is moved first. */
const NAV_ITEMS = [...document.getElementById('nav-list').children];
let cleanup = null;

/** Where a role starts: a field crew works from its work orders (first in the nav too), everyone else from the overview. */
export const landingPage = (who) => (who?.role === 'field' ? '/work-orders' : '/overview');

/** Page modules that keep state for the whole tab (a bulk's progress): forgotten when the user changes. */
const STATEFUL = [orders];

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || landingPage(session.who);
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
  // No name or role is left behind when nobody is signed in (a 401, a sign-out): the header shows who is, or nothing.
  document.getElementById('who-name').textContent = who ? who.name : '';
  document.getElementById('who-role').textContent = who ? who.role : '';
  setMenu(false);
  if (!who) return;
  for (const a of document.querySelectorAll('#nav a[data-needs]')) a.parentElement.hidden = !session.can(a.dataset.needs);
  // The role's landing page comes first in the nav (Work orders for a field crew); the rest keep their order.
  const list = document.getElementById('nav-list');
  const items = NAV_ITEMS.slice();
  const first = items.findIndex((li) => li.querySelector(`a[href="#${landingPage(who)}"]`));
  if (first > 0) items.unshift(...items.splice(first, 1));
  list.append(...items);
}

/** Below 600 px the nav folds behind a "Menu" button so its items never widen the page. */
function setMenu(open) {
  const button = document.getElementById('menu-toggle');
  button.setAttribute('aria-expanded', String(open));
  document.getElementById('nav').classList.toggle('open', open);
}

/** Sign-out and a key that stopped working (401): nothing of the last user stays, neither in the header nor on a page. */
function forgetUser() {
  session.key = null;
  session.who = null;
  stopLive();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  for (const mod of STATEFUL) mod.reset();
  fill(main);
  showChrome();
  if (location.hash === '#/signin') void route();
  else navigate('/signin');
}

export function signOut() {
  forgetUser();
}

async function route() {
  const { path, query } = parseHash();
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const signedIn = await ensureSignedIn();
  if (!signedIn && path !== '/signin') return navigate('/signin');
  if (signedIn && path === '/signin') return navigate(landingPage(session.who));
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
  // Busy while the page loads its data, so assistive technology (and a test) knows when the page is complete.
  main.setAttribute('aria-busy', 'true');
  const params = Object.fromEntries(Object.entries(match.m.groups ?? {}).filter(([, v]) => v !== undefined).map(([k, v]) => [k, decodeURIComponent(v)]));
  try {
    cleanup = (await match.mod.render(main, { params, query, navigate, landingPage, signedIn: () => showChrome() })) ?? null;
  } catch (err) {
    fill(main, h('h1', {}, 'Something went wrong'), h('div.error', { role: 'alert' }, h('strong', {}, err.code ?? 'Error'), ': ', err.message));
  }
  main.setAttribute('aria-busy', 'false');
  // Move focus to the page heading so keyboard and screen-reader users start at the new content.
  const heading = main.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
    document.title = `${heading.textContent} · Meterline console`;
  }
}

whenUnauthorized(forgetUser);

document.getElementById('sign-out').addEventListener('click', signOut);
document.getElementById('menu-toggle').addEventListener('click', (e) => setMenu(e.currentTarget.getAttribute('aria-expanded') !== 'true'));
// Choosing a page closes the menu on a phone.
document.getElementById('nav-list').addEventListener('click', (e) => {
  if (e.target.closest('a')) setMenu(false);
});
onLiveState((s) => {
  const el = document.getElementById('live-state');
  el.textContent = `live: ${s}`;
  el.dataset.state = s;
});
window.addEventListener('hashchange', () => void route());
void route();
