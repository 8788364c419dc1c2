// The connections list: search, filters, sort and page in the URL; rows live (batched per frame).

import { h, replace } from '../dom.js';
import { get, describe, isStatus } from '../api.js';
import { subscribe } from '../events.js';
import { age, ms, count } from '../format.js';
import { statusBadge, setStatus, liveUpdate, applyLive } from '../components/status.js';
import { kindText } from '../components/waterfall.js';
import { notice, table, btn } from '../components/page-kit.js';
import { field, selectField } from '../components/field.js';

const STATUSES = ['healthy', 'degraded', 'down', 'unknown'];
const SORTS = [['name', 'Name'], ['status', 'Status (worst first)'], ['checked', 'Last check'], ['latency', 'Latency (slowest first)'], ['updated', 'Recently changed']];
const PAGE_SIZES = [25, 50, 100, 200];
const DEFAULT_PER_PAGE = 50;
const FILTERS = ['search', 'status', 'tag', 'engine'];

function readState(q) {
  const n = (k, d) => Number.parseInt(q.get(k), 10) || d;
  const one = (k, values, d = '') => (values.includes(q.get(k)) ? q.get(k) : d);
  return {
    search: q.get('search') || '',
    status: one('status', STATUSES),
    tag: q.get('tag') || '',
    engine: one('engine', ['postgres']),
    sort: one('sort', SORTS.map(([v]) => v), 'name'),
    page: Math.max(1, n('page', 1)),
    per_page: PAGE_SIZES.includes(n('per_page', 0)) ? n('per_page', 0) : DEFAULT_PER_PAGE,
  };
}

// A failed last check has no latency: its error kind shows, labelled, under the status.
function paintHealth({ item: { health }, latencyCell, error }) {
  const kind = health.error_kind;
  latencyCell.textContent = kind ? '—' : ms(health.latency_ms);
  error.textContent = kind ? `Error: ${kindText(kind)}` : '';
  error.hidden = !kind;
}

export async function mount(root, ctx) {
  ctx.title('Connections');
  const state = readState(ctx.query);
  const rows = new Map(); // id → {tr, badge, ageCell, latencyCell, error, item}
  const pending = new Map(); // id → latest live update, applied on the next frame
  let frame = 0;
  let controller = null;
  let searchTimer = 0;
  let refetchTimer = 0;

  const F = {
    search: field({ label: 'Search', name: 'search', type: 'search', value: state.search, hint: 'Name, description, host or tag' }),
    status: selectField({ label: 'Status', name: 'status', options: [['', 'Any status'], ...STATUSES] }),
    tag: field({ label: 'Tag', name: 'tag', value: state.tag }),
    engine: selectField({ label: 'Engine', name: 'engine', options: [['', 'Any engine'], ['postgres', 'PostgreSQL']] }),
    sort: selectField({ label: 'Sort by', name: 'sort', options: SORTS }),
    per_page: selectField({ label: 'Per page', name: 'per_page', options: PAGE_SIZES }),
  };
  const c = Object.fromEntries(Object.entries(F).map(([k, f]) => [k, f.input]));
  for (const k of Object.keys(c)) c[k].value = String(state[k]);
  const clearButton = btn('Clear filters', clearFilters);
  const newLink = () => ctx.can('connection.create') && h('a.button.button--primary', { href: '/connections/new' }, 'New connection');

  const summary = h('p.list-summary.muted', { id: 'list-summary', tabindex: '-1' });
  const problem = h('div');
  const tableWrap = table('Connections', ['Name', 'Status', ['Tags', 'hide-narrow'], 'Last check', ['Latency', 'num']], null, 'table--stack');
  tableWrap.firstChild.setAttribute('aria-describedby', 'list-summary');
  const tbody = tableWrap.querySelector('tbody');
  const empty = h('div.empty', { hidden: true });
  const pager = h('nav.pager', { 'aria-label': 'Pages' });

  replace(root,
    h('div.page-head', null, h('h1', null, 'Connections'), newLink()),
    h('form.filters', { role: 'search', 'aria-label': 'Filter connections', on: { submit: (e) => { e.preventDefault(); changed(true); } } },
      Object.values(F).map((f) => f.el),
      h('div.field', null, clearButton)),
    problem, summary, tableWrap, empty, pager);

  const tell = (changes) => changes.length && ctx.announce(changes.length > 3 ? `${changes.length} connections changed status.` : `${changes.join('. ')}.`);

  const hasFilters = () => FILTERS.some((k) => state[k]);

  function pushUrl(push) {
    ctx.setQuery({
      ...state,
      sort: state.sort === 'name' ? '' : state.sort,
      page: state.page > 1 ? state.page : '',
      per_page: state.per_page === DEFAULT_PER_PAGE ? '' : state.per_page,
    }, { replace: !push });
  }

  // A choice (select, clear) is a history entry; typing replaces the current one.
  function changed(now) {
    for (const k of Object.keys(c)) state[k] = c[k].value.trim();
    state.per_page = Number(state.per_page);
    state.page = 1;
    clearTimeout(searchTimer);
    const run = () => { pushUrl(now); load({ announce: true }); };
    if (now) run(); else searchTimer = setTimeout(run, 250);
  }

  function clearFilters() {
    for (const k of FILTERS) c[k].value = '';
    changed(true);
    c.search.focus();
  }

  c.search.addEventListener('input', () => changed(false));
  c.tag.addEventListener('input', () => changed(false));
  for (const k of ['status', 'engine', 'sort', 'per_page']) c[k].addEventListener('change', () => changed(true));

  function buildRow(item) {
    const badge = statusBadge(item.health.status);
    const ageCell = h('td.nowrap', { dataset: { label: 'Checked' } }, age(item.health.checked_at));
    const latencyCell = h('td.num', { dataset: { label: 'Latency' } });
    const error = h('span.sub');
    const tr = h('tr', { dataset: { id: item.id } },
      h('th.name-cell.stack-full', { scope: 'row' },
        h('a', { href: `/connections/${item.id}` }, item.name),
        h('span.sub', null, `${item.host}:${item.port} / ${item.database}`)),
      h('td', null, badge, error),
      h('td.hide-narrow', null, item.tags.length ? h('ul.tags', null, item.tags.map((t) => h('li.tag', null, t))) : null),
      ageCell,
      latencyCell);
    const row = { tr, badge, ageCell, latencyCell, error, item: { ...item, health: { ...item.health } } };
    rows.set(item.id, row);
    paintHealth(row);
    return tr;
  }

  function renderPage(data, { quiet = false } = {}) {
    const before = quiet ? null : new Map([...rows].map(([id, r]) => [id, r.item]));
    const focusedId = tbody.contains(document.activeElement) && document.activeElement.closest('tr').dataset.id;
    rows.clear();
    pending.clear();
    tbody.replaceChildren(...data.items.map(buildRow));
    if (rows.has(focusedId)) rows.get(focusedId).tr.querySelector('a').focus();
    if (before) {
      tell(data.items.filter((i) => before.has(i.id) && before.get(i.id).health.status !== i.health.status)
        .map((i) => `${i.name} is now ${i.health.status}`));
    }

    const total = data.total;
    const pages = Math.max(1, Math.ceil(total / data.per_page));
    const first = total === 0 ? 0 : (data.page - 1) * data.per_page + 1;
    const last = Math.min(total, first + data.items.length - 1);
    summary.textContent = total === 0 ? '' : `${count(first)}–${count(last)} of ${count(total)} connection${total === 1 ? '' : 's'}`;
    const noRows = data.items.length === 0;
    tableWrap.hidden = noRows;
    summary.hidden = total === 0;
    clearButton.hidden = !hasFilters();
    empty.hidden = !noRows;
    if (noRows && total === 0 && !hasFilters()) {
      replace(empty,
        h('h2', null, 'No connections yet'),
        h('p', null, ctx.can('connection.create')
          ? 'Add the first database connection: DataHub tests it, encrypts its password and checks its health.'
          : 'No connection has been shared with you yet. Ask an admin or a connection’s owner for access.'),
        newLink());
    } else if (noRows && total === 0) {
      replace(empty,
        h('h2', null, 'No connections match'),
        h('p', null, 'Nothing matches the search and filters. Clear them to see every connection.'),
        btn('Clear filters', clearFilters));
    } else if (noRows) {
      // Past the end (rows went away): show the last page.
      state.page = pages;
      pushUrl(false);
      load();
      return;
    }
    renderPager(data.page, pages);
  }

  function pageHref(page) {
    const q = new URLSearchParams(location.search);
    q.set('page', page);
    if (page < 2) q.delete('page');
    return `${location.pathname}?${q}`.replace(/\?$/, '');
  }

  function goPage(event, page) {
    event.preventDefault();
    state.page = page;
    pushUrl(true);
    load({ announce: true, focusTable: true });
  }

  function renderPager(page, pages) {
    if (pages <= 1) { replace(pager); pager.hidden = true; return; }
    pager.hidden = false;
    const link = (label, target, rel) => (target >= 1 && target <= pages && target !== page
      ? h('a.button.button--secondary.button--small', { href: pageHref(target), rel, on: { click: (e) => goPage(e, target) } }, label)
      : h('span.button.button--secondary.button--small', { 'aria-disabled': 'true' }, label));
    replace(pager, link('Previous', page - 1, 'prev'), h('span.pager-at', null, `Page ${count(page)} of ${count(pages)}`), link('Next', page + 1, 'next'));
  }

  async function load({ announce = false, focusTable = false } = {}) {
    if (controller) controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    tableWrap.setAttribute('aria-busy', 'true');
    try {
      const { data } = await get('/connections', state, { signal });
      if (signal.aborted) return;
      performance.mark('dh:list:data');
      replace(problem);
      renderPage(data, { quiet: announce });
      performance.mark('dh:list:rendered');
      performance.measure('dh:list:render', 'dh:list:data', 'dh:list:rendered');
      if (announce) ctx.announce(data.total === 0 ? 'No connections match.' : summary.textContent);
      if (focusTable) summary.focus();
    } catch (e) {
      if (signal.aborted || (e && e.name === 'AbortError')) return;
      if (!isStatus(e, 401)) replace(problem, notice('error', e.field ? `${e.field}: ${e.message}` : describe(e)));
    } finally {
      if (!signal.aborted) tableWrap.removeAttribute('aria-busy');
    }
  }

  const refetchSoon = (wait) => { clearTimeout(refetchTimer); refetchTimer = setTimeout(load, wait); };

  function flush() {
    frame = 0;
    const changes = [];
    for (const [id, update] of pending) {
      const row = rows.get(id);
      if (!row) continue;
      const health = row.item.health;
      if (!applyLive(health, update)) continue;
      if (setStatus(row.badge, health.status)) {
        changes.push(`${row.item.name} is now ${health.status}`);
        if (state.status || state.sort === 'status') refetchSoon(1000);
      }
      paintHealth(row);
      row.ageCell.textContent = age(health.checked_at);
    }
    pending.clear();
    tell(changes);
  }

  function onEvent(event) {
    const known = rows.has(event.id);
    if (known && ['status_changed', 'checked'].includes(event.type)) {
      pending.set(event.id, liveUpdate(event, pending.get(event.id)));
      if (!frame) frame = requestAnimationFrame(flush);
    } else if (event.type === 'connection_changed') {
      refetchSoon(known ? 300 : 1000); // an unknown id may be a new row of this page
    } else if (event.type === 'resync' || (event.type === 'connection_deleted' && known)) {
      refetchSoon(300);
    }
  }

  const unsubscribe = subscribe(onEvent);
  const ticker = setInterval(() => {
    const now = Date.now();
    for (const row of rows.values()) {
      const text = age(row.item.health.checked_at, now);
      if (row.ageCell.textContent !== text) row.ageCell.textContent = text;
    }
  }, 5000);

  await load();

  return () => {
    unsubscribe();
    clearInterval(ticker);
    clearTimeout(searchTimer);
    clearTimeout(refetchTimer);
    if (frame) cancelAnimationFrame(frame);
    if (controller) controller.abort();
  };
}
