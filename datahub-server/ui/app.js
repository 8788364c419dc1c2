// The shell: router (History API), header and navigation, announcer, and each page's context.

import { h, replace } from './dom.js';
import { get, post, onUnauthenticated, describe, isStatus } from './api.js';
import * as events from './events.js';
import { btn, refuse } from './components/page-kit.js';
import { closeDialogs } from './components/dialog.js';

const ID = '([0-9a-fA-F-]{36})';

// Path → page module; the nav item is the path's first segment. `open` pages need no sign-in.
const route = (path, load, open) => ({ load, open, nav: /^\/[a-z-]+/.exec(path)[0], re: new RegExp(`^${path}/?$`) });
const ROUTES = [
  route('/sign-in', () => import('./pages/sign-in.js'), true),
  route('/connections', () => import('./pages/list.js')),
  route('/connections/new', () => import('./pages/form.js')),
  route(`/connections/${ID}`, () => import('./pages/detail.js')),
  route(`/connections/${ID}/edit`, () => import('./pages/form.js')),
  route('/users', () => import('./pages/users.js')),
  route('/teams', () => import('./pages/teams.js')),
  route('/tokens', () => import('./pages/tokens.js')),
  route('/audit', () => import('./pages/audit.js')),
  route('/policy', () => import('./pages/policy.js')),
];

const NOT_FOUND = { load: () => import('./pages/not-found.js') };

// Role-level permissions, as datahub-core/src/rbac/policy.rs's RULES; a `!` marks a write,
// which a read-only credential may not do.
const ALL = 'admin editor viewer auditor';
const PERMISSIONS = {
  'connection.create': 'admin editor !',
  'connection.test_draft': 'admin editor',
  users: 'admin',
  'users.manage': 'admin !',
  'teams.list': ALL,
  'teams.manage': 'admin !',
  tokens: ALL,
  audit: 'admin auditor',
  'policy.read': ALL,
  'policy.write': 'admin !',
};

// [path, label, permission]
const NAV = [
  ['/connections', 'Connections'],
  ['/users', 'Users', 'users'],
  ['/teams', 'Teams', 'teams.list'],
  ['/tokens', 'Tokens', 'tokens'],
  ['/audit', 'Audit log', 'audit'],
  ['/policy', 'Policy', 'policy.read'],
];

const main = document.getElementById('main');
const nav = document.getElementById('main-nav');
const account = document.getElementById('account');
const announcer = document.getElementById('announcer');

let me = null;
let cleanup = null;
let generation = 0;
let firstRender = true;

function can(name) {
  const rule = (PERMISSIONS[name] || '').split(' ');
  return !!me && rule.includes(me.role) && !(me.read_only && rule.includes('!'));
}

function match(pathname) {
  for (const route of ROUTES) {
    const m = route.re.exec(pathname);
    if (m) return { route, params: m[1] ? { id: m[1] } : {} };
  }
  return { route: NOT_FOUND, params: {} };
}

const here = () => location.pathname + location.search;

/** A same-origin path to go to after sign-in, or /connections. */
export function safeNext(next) {
  const u = /^\/(?![/\\])/.test(next) && new URL(next, location.origin);
  return u && u.origin === location.origin && !/^\/(sign-in|api\/)/.test(u.pathname) ? u.pathname + u.search + u.hash : '/connections';
}

const go = (href, replaceState) => history[replaceState ? 'replaceState' : 'pushState'](null, '', href);

function navigate(href, { replace: replaceState = false } = {}) {
  if (replaceState || href !== here()) go(href, replaceState);
  render();
}

function setQuery(values, { replace: replaceState = true } = {}) {
  const params = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(values)) {
    if (v == null || v === '' || v === false) params.delete(k); else params.set(k, v);
  }
  const href = `${location.pathname}?${params}`.replace(/\?$/, '');
  if (href !== here()) go(href, replaceState);
}

function announce(text) {
  announcer.textContent = '';
  // A new text node after a tick is read even when it repeats the last message.
  setTimeout(() => { announcer.textContent = text; }, 50);
}

const title = (text) => { document.title = text ? `${text} — DataHub` : 'DataHub'; };

function toSignIn() {
  if (location.pathname === '/sign-in') return;
  const next = here();
  forget();
  navigate(`/sign-in?next=${encodeURIComponent(next)}`, { replace: true });
}

async function signOut() {
  try {
    await post('/auth/logout');
  } catch (e) {
    if (!isStatus(e, 401)) { announce(describe(e)); return; }
  }
  forget();
  navigate('/sign-in');
}

function forget() {
  me = null;
  events.close();
  renderHeader();
}

function signedIn(user) {
  me = user;
  renderHeader();
  events.open();
}

function renderHeader(active) {
  nav.hidden = account.hidden = !me;
  replace(nav, me && h('ul.nav-list', null, NAV.filter((n) => !n[2] || can(n[2])).map(([href, label]) => h('li', null,
    h('a.nav-link', { href, 'aria-current': href === active ? 'page' : null }, label)))));
  replace(account, me && [
    h('span.account-name', null, me.username, ` (${me.role})`),
    btn('Sign out', signOut, 'secondary small')]);
}

const errorView = (root, heading, text, retry) => refuse(root, { title }, heading, text, 'error', retry);

async function render() {
  const gen = ++generation;
  closeDialogs();
  if (cleanup) {
    try { cleanup(); } catch (e) { setTimeout(() => { throw e; }); }
    cleanup = null;
  }
  const { route, params } = match(location.pathname);
  if (!route.open && !me) {
    toSignIn();
    return;
  }
  renderHeader(route.nav);
  const root = h('div');
  replace(main, root);
  if (!firstRender) main.focus();
  firstRender = false;
  window.scrollTo(0, 0);
  let page;
  try {
    page = await route.load();
  } catch (e) {
    if (gen !== generation) return;
    errorView(root, 'This page could not be loaded',
      `The page’s code could not be loaded (${e && e.message}). The server may have been updated: reload the page.`,
      () => location.reload());
    return;
  }
  if (gen !== generation) return;
  const ctx = {
    params,
    query: new URLSearchParams(location.search),
    me,
    navigate: (href, opts) => { if (gen === generation) navigate(href, opts); },
    setQuery: (values, opts) => { if (gen === generation) setQuery(values, opts); },
    announce,
    can,
    title,
    signedIn,
    get current() { return gen === generation; },
  };
  try {
    const result = await page.mount(root, ctx);
    if (typeof result !== 'function') return;
    if (gen === generation) cleanup = result; else result();
  } catch (e) {
    if (gen !== generation || isStatus(e, 401)) return;
    if (isStatus(e, 403)) errorView(root, 'Not allowed', describe(e));
    else if (isStatus(e, 404)) errorView(root, 'Not found', 'It does not exist, or you may not see it.');
    else errorView(root, 'Something went wrong', describe(e), () => render());
  }
}

function onClick(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || /^\/(api|ui)\//.test(url.pathname)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

async function boot() {
  onUnauthenticated(toSignIn);
  document.addEventListener('click', onClick);
  window.addEventListener('popstate', () => render());
  if (location.pathname === '/') history.replaceState(null, '', '/connections');
  try {
    me = (await get('/auth/me')).data;
    events.open();
  } catch (e) {
    me = null;
    const atSignIn = location.pathname === '/sign-in';
    if (isStatus(e, 401)) {
      if (!atSignIn) return; // toSignIn has rendered the sign-in page.
    } else if (!atSignIn) {
      errorView(main, 'The server could not be reached', describe(e), () => location.reload());
      return;
    }
  }
  render();
}

boot();
