// The connections list: search, filters, sort and page in the URL; rows live (batched per frame).

import { h, replace } from '../dom.js';
import { get, describe, isStatus } from '../api.js';
import { subscribe } from '../events.js';
import { age, ms, count } from '../format.js';
import { statusBadge, setStatus, liveUpdate, applyLive } from '../components/status.js';
import { kindText } from '../components/waterfall.js';
import { notice, table, btn } from '../components/page-kit.js';

const STATUSES = ['healthy', 'degraded', 'down', 'unknown'];
const SORTS = [['name', 'Name'], ['status', 'Status (worst first)'], ['checked', 'Last check'], ['latency', 'Latency (slowest first)'], ['updated', 'Recently changed']];
const PAGE_SIZES = [25, 50, 100, 200];
const DEFAULT_PER_PAGE = 50;
const FILTERS = ['search', 'status', 'tag', 'engine'];

function readState(query) {
  const n = (v, d) => { const x = Number.parseInt(v, 10); return Number.isFinite(x) && x >= 1 ? x : d; };
  return {
    search: query.get('search') || '',
    status: STATUSES.includes(query.get('status')) ? query.get('status') : '',
    tag: query.get('tag') || '',
    engine: query.get('engine') === 'postgres' ? 'postgres' : '',
    sort: SORTS.some(([v]) => v === query.get('sort')) ? query.get('sort') : 'name',
    page: n(query.get('page'), 1),
    per_page: PAGE_SIZES.includes(n(query.get('per_page'), 0)) ? n(query.get('per_page'), 0) : DEFAULT_PER_PAGE,
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

  // Controls, each named as its query parameter.
  const input = (name, type) => h('input.input', { type, name, id: `list-${name}`, value: state[name], autocomplete: 'off', spellcheck: 'false' });
  const select = (name, options) => {
    const el = h('select.input', { name, id: `list-${name}` }, options.map(([value, label]) => h('option', { value }, label)));
    el.value = String(state[name]);
    return el;
  };
  const c = {
    search: input('search', 'search'),
    status: select('status', [['', 'Any status'], ...STATUSES.map((x) => [x, x])]),
    tag: input('tag', 'text'),
    engine: select('engine', [['', 'Any engine'], ['postgres', 'PostgreSQL']]),
    sort: select('sort', SORTS),
    per_page: select('per_page', PAGE_SIZES.map((n) => [String(n), String(n)])),
  };
  c.search.setAttribute('aria-describedby', 'list-search-hint');
  const labels = { status: 'Status', tag: 'Tag', engine: 'Engine', sort: 'Sort by', per_page: 'Per page' };
  const clearButton = btn('Clear filters', clearFilters);
  const newLink = () => ctx.can('connection.create') && h('a.button.button--primary', { href: '/connections/new' }, 'New connection');

  const summary = h('p.list-summary.muted', { id: 'list-summary' });
  const problem = h('div');
  const tableWrap = table('Connections', ['Name', 'Status', ['Tags', 'hide-narrow'], 'Last check', ['Latency', 'num']], null, 'table--stack');
  tableWrap.firstChild.setAttribute('aria-describedby', 'list-summary');
  const tbody = tableWrap.querySelector('tbody');
  const empty = h('div.empty', { hidden: true });
  const pager = h('nav.pager', { 'aria-label': 'Pages' });

  replace(root,
    h('div.page-head', null, h('h1', null, 'Connections'), newLink()),
    h('form.filters', { role: 'search', 'aria-label': 'Filter connections', on: { submit: (e) => { e.preventDefault(); changed(true); } } },
      h('div.filter.filter--search', null,
        h('label.field-label', { for: 'list-search' }, 'Search'),
        h('p.field-hint', { id: 'list-search-hint' }, 'Name, description, host or tag'),
        c.search),
      Object.entries(labels).map(([k, label]) => h('div.filter', null, h('label.field-label', { for: `list-${k}` }, label), c[k])),
      h('div.filter', null, clearButton)),
    problem, summary, tableWrap, empty, pager);

  const tell = (changes) => changes.length && ctx.announce(changes.length > 3 ? `${changes.length} connections changed status.` : `${changes.join('. ')}.`);

  function hasFilters() {
    return FILTERS.some((k) => state[k]);
  }

  function readControls() {
    for (const k of Object.keys(c)) state[k] = c[k].value.trim();
    state.per_page = Number(state.per_page);
  }

  function pushUrl(push) {
    ctx.setQuery({
      search: state.search, status: state.status, tag: state.tag, engine: state.engine,
      sort: state.sort === 'name' ? '' : state.sort,
      page: state.page > 1 ? state.page : '',
      per_page: state.per_page === DEFAULT_PER_PAGE ? '' : state.per_page,
    }, { replace: !push });
  }

  // A choice (select, clear) is a history entry; typing replaces the current one.
  function changed(now) {
    readControls();
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
    const focusedId = document.activeElement && document.activeElement.closest && tbody.contains(document.activeElement)
      ? document.activeElement.closest('tr').dataset.id : null;
    rows.clear();
    pending.clear();
    const fragment = document.createDocumentFragment();
    for (const item of data.items) fragment.append(buildRow(item));
    tbody.replaceChildren(fragment);
    if (focusedId && rows.has(focusedId)) rows.get(focusedId).tr.querySelector('a').focus();
    if (before) {
      const changes = data.items.filter((i) => before.has(i.id) && before.get(i.id).health.status !== i.health.status)
        .map((i) => `${i.name} is now ${i.health.status}`);
      tell(changes);
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
          ? 'Add the first database connection: DataHub tests it, keeps its password encrypted and checks its health.'
          : 'No connection has been shared with you yet. Ask an admin or a connection’s owner for access.'),
        newLink());
    } else if (noRows && total === 0) {
      replace(empty,
        h('h2', null, 'No connections match'),
        h('p', null, 'Nothing matches the search and filters. Change them, or clear them to see every connection.'),
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
    if (page > 1) q.set('page', String(page)); else q.delete('page');
    const s = q.toString();
    return location.pathname + (s ? `?${s}` : '');
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
      const { data } = await get('/connections', {
        search: state.search, tag: state.tag, status: state.status, engine: state.engine,
        sort: state.sort, page: state.page, per_page: state.per_page,
      }, { signal });
      if (signal.aborted) return;
      performance.mark('dh:list:data');
      replace(problem);
      renderPage(data, { quiet: announce });
      performance.mark('dh:list:rendered');
      performance.measure('dh:list:render', 'dh:list:data', 'dh:list:rendered');
      if (announce) ctx.announce(data.total === 0 ? 'No connections match.' : summary.textContent);
      if (focusTable) {
        summary.setAttribute('tabindex', '-1');
        summary.focus();
      }
    } catch (e) {
      if (signal.aborted || (e && e.name === 'AbortError')) return;
      if (!isStatus(e, 401)) replace(problem, notice('error', e.field ? `${e.field}: ${e.message}` : describe(e)));
    } finally {
      if (!signal.aborted) tableWrap.removeAttribute('aria-busy');
    }
  }

  function refetchSoon(wait = 300) {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(() => load(), wait);
  }

  // Live updates.
  function flush() {
    frame = 0;
    const changes = [];
    for (const [id, update] of pending) {
      const row = rows.get(id);
      if (!row) continue;
      const health = row.item.health;
      const before = health.status;
      if (!applyLive(health, update)) continue;
      if (setStatus(row.badge, health.status)) changes.push(`${row.item.name} is now ${health.status}`);
      if (before !== health.status && (state.status || state.sort === 'status')) refetchSoon(1000);
      paintHealth(row);
      row.ageCell.textContent = age(health.checked_at);
    }
    pending.clear();
    tell(changes);
  }

  function onEvent(event) {
    switch (event.type) {
      case 'status_changed':
      case 'checked': {
        if (!rows.has(event.id)) return;
        pending.set(event.id, liveUpdate(event, pending.get(event.id)));
        if (!frame) frame = requestAnimationFrame(flush);
        return;
      }
      case 'connection_changed':
        // Unknown ids may be new connections that belong on this page.
        refetchSoon(rows.has(event.id) ? 300 : 1000);
        return;
      case 'connection_deleted':
        if (rows.has(event.id)) refetchSoon(300);
        return;
      case 'resync':
        refetchSoon(300);
        return;
      default:
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
