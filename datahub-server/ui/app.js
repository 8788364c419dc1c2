// The shell: the router (History API), the header with the main navigation and sign-out, the
// polite announcer, and the context every page gets.

import { h, replace } from './dom.js';
import { get, post, onUnauthenticated, describe, ApiError } from './api.js';
import * as events from './events.js';

const ID = '([0-9a-fA-F-]{36})';

// Path → page module. `open` pages need no sign-in; others send a signed-out visitor to sign-in.
const ROUTES = [
  { path: '/sign-in', load: () => import('./pages/sign-in.js'), open: true },
  { path: '/connections', load: () => import('./pages/list.js'), nav: '/connections' },
  { path: '/connections/new', load: () => import('./pages/form.js'), nav: '/connections' },
  { path: `/connections/${ID}`, load: () => import('./pages/detail.js'), nav: '/connections', params: ['id'] },
  { path: `/connections/${ID}/edit`, load: () => import('./pages/form.js'), nav: '/connections', params: ['id'] },
  { path: '/users', load: () => import('./pages/users.js'), nav: '/users' },
  { path: '/teams', load: () => import('./pages/teams.js'), nav: '/teams' },
  { path: '/tokens', load: () => import('./pages/tokens.js'), nav: '/tokens' },
  { path: '/audit', load: () => import('./pages/audit.js'), nav: '/audit' },
  { path: '/policy', load: () => import('./pages/policy.js'), nav: '/policy' },
].map((r) => ({ ...r, re: new RegExp(`^${r.path}/?$`) }));

const NOT_FOUND = { load: () => import('./pages/not-found.js') };

// Role-level permissions, as datahub-core/src/rbac/policy.rs's RULES (writes also need a
// credential that is not read-only).
const PERMISSIONS = {
  'connection.create': { roles: ['admin', 'editor'], write: true },
  'connection.test_draft': { roles: ['admin', 'editor'] },
  users: { roles: ['admin'] },
  'users.manage': { roles: ['admin'], write: true },
  'teams.list': { roles: ['admin', 'editor', 'viewer', 'auditor'] },
  'teams.manage': { roles: ['admin'], write: true },
  tokens: { roles: ['admin', 'editor', 'viewer', 'auditor'] },
  'tokens.manage': { roles: ['admin'], write: true },
  audit: { roles: ['admin', 'auditor'] },
  'policy.read': { roles: ['admin', 'editor', 'viewer', 'auditor'] },
  'policy.write': { roles: ['admin'], write: true },
};

const NAV = [
  { href: '/connections', label: 'Connections' },
  { href: '/users', label: 'Users', can: 'users' },
  { href: '/teams', label: 'Teams', can: 'teams.list' },
  { href: '/tokens', label: 'Tokens', can: 'tokens' },
  { href: '/audit', label: 'Audit log', can: 'audit' },
  { href: '/policy', label: 'Policy', can: 'policy.read' },
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
  const rule = PERMISSIONS[name];
  if (!me || !rule) return false;
  if (rule.write && me.read_only) return false;
  return rule.roles.includes(me.role);
}

function match(pathname) {
  for (const route of ROUTES) {
    const m = route.re.exec(pathname);
    if (m) {
      const params = {};
      (route.params || []).forEach((name, i) => { params[name] = decodeURIComponent(m[i + 1]); });
      return { route, params };
    }
  }
  return { route: NOT_FOUND, params: {} };
}

function here() {
  return location.pathname + location.search;
}

/** A same-origin path to go to after sign-in, or /connections. */
export function safeNext(next) {
  if (typeof next !== 'string' || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/connections';
  try {
    const u = new URL(next, location.origin);
    if (u.origin !== location.origin || u.pathname.startsWith('/sign-in') || u.pathname.startsWith('/api/')) return '/connections';
    return u.pathname + u.search + u.hash;
  } catch {
    return '/connections';
  }
}

function navigate(href, { replace: replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, '', href);
  else if (href !== here()) history.pushState(null, '', href);
  render();
}

function setQuery(values, { replace: replaceState = true } = {}) {
  const params = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(values)) {
    if (v === null || v === undefined || v === '' || v === false) params.delete(k);
    else params.set(k, String(v));
  }
  const qs = params.toString();
  const href = location.pathname + (qs ? `?${qs}` : '');
  if (href === here()) return;
  if (replaceState) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
}

function announce(text) {
  announcer.textContent = '';
  // A new text node after a tick is read even when it repeats the last message.
  setTimeout(() => { announcer.textContent = text; }, 50);
}

function title(text) {
  document.title = text ? `${text} — DataHub` : 'DataHub';
}

function toSignIn() {
  if (location.pathname === '/sign-in') return;
  const next = here();
  me = null;
  events.close();
  renderHeader();
  navigate(`/sign-in?next=${encodeURIComponent(next)}`, { replace: true });
}

async function signOut() {
  try {
    await post('/auth/logout');
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      announce(describe(e));
      return;
    }
  }
  me = null;
  events.close();
  renderHeader();
  navigate('/sign-in');
}

function signedIn(user) {
  me = user;
  renderHeader();
  events.open();
}

function renderHeader(active) {
  if (!me) {
    nav.hidden = true;
    account.hidden = true;
    replace(nav);
    replace(account);
    return;
  }
  replace(nav, h('ul', { class: 'nav-list' }, NAV.filter((item) => !item.can || can(item.can)).map((item) => h('li', null,
    h('a', { href: item.href, class: 'nav-link', 'aria-current': item.href === active ? 'page' : null }, item.label)))));
  replace(account,
    h('span', { class: 'account-name' }, me.username, h('span', { class: 'account-role' }, ` (${me.role})`)),
    h('button', { type: 'button', class: 'button button--secondary button--small', on: { click: signOut } }, 'Sign out'));
  nav.hidden = false;
  account.hidden = false;
}

function errorView(root, heading, message, retry) {
  title(heading);
  replace(root,
    h('h1', null, heading),
    h('div', { class: 'notice notice--error', role: 'alert' }, h('p', null, message)),
    retry ? h('p', null, h('button', { type: 'button', class: 'button', on: { click: retry } }, 'Try again')) : null,
    h('p', null, h('a', { href: '/connections' }, 'Back to connections')));
}

async function render() {
  const gen = ++generation;
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
  const root = h('div', { class: 'page' });
  replace(main, root);
  if (!firstRender) main.focus({ preventScroll: false });
  firstRender = false;
  window.scrollTo(0, 0);
  let page;
  try {
    page = await route.load();
  } catch {
    if (gen !== generation) return;
    errorView(root, 'This page could not be loaded',
      'The page’s code could not be loaded. The server may have been updated: reload the page.',
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
    if (gen !== generation) {
      if (typeof result === 'function') result();
      return;
    }
    if (typeof result === 'function') cleanup = result;
  } catch (e) {
    if (gen !== generation) return;
    if (e instanceof ApiError && e.status === 401) return;
    if (e instanceof ApiError && e.status === 403) {
      errorView(root, 'Not allowed', describe(e));
    } else if (e instanceof ApiError && e.status === 404) {
      errorView(root, 'Not found', 'It does not exist, or you may not see it.');
    } else {
      errorView(root, 'Something went wrong', describe(e), () => render());
    }
  }
}

function onClick(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest && event.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/ui/')) return;
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
    if (e instanceof ApiError && e.status === 401) {
      if (!atSignIn) return; // toSignIn has rendered the sign-in page.
    } else if (!atSignIn) {
      errorView(main, 'The server could not be reached', describe(e), () => location.reload());
      return;
    }
  }
  render();
}

boot();
