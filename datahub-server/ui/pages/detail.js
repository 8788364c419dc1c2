// One connection: settings, facts, health chart, checks, Test now, Reveal, Edit, Delete, grants; live.

import { h, replace } from '../dom.js';
import { get, post, del, describe, isStatus } from '../api.js';
import { subscribe } from '../events.js';
import { age, ms, dateTime, pct, days } from '../format.js';
import { statusBadge, setStatus, liveUpdate, applyLive } from '../components/status.js';
import { waterfall, kindText, stepName } from '../components/waterfall.js';
import { healthChart } from '../components/health-chart.js';
import { grantsPanel } from '../components/grants-panel.js';
import { revealer } from '../components/reveal.js';
import { openDialog } from '../components/dialog.js';
import { field } from '../components/field.js';
import { notice, refuse, table, facts, btn } from '../components/page-kit.js';

const HISTORY_LIMIT = 1000; // the API's maximum
const TLS_INSECURE = ['disable', 'allow', 'prefer'];
const set = (yes) => (yes ? 'set' : 'not set');
const code = (x) => (x ? h('code', null, x) : '—');
const tagList = (tags) => (tags.length ? h('ul.tags', null, tags.map((t) => h('li.tag', null, t))) : 'none');

export async function mount(root, ctx) {
  const { id } = ctx.params;
  const me = ctx.me;
  let connection;
  try {
    connection = (await get(`/connections/${id}`)).data;
  } catch (e) {
    if (!isStatus(e, 404) && !(isStatus(e, 400) && e.field === 'id')) throw e;
    return refuse(root, ctx, 'Connection not found', 'There is no connection with this id, or it has not been shared with you.');
  }
  let lastReport = null;
  let deleted = false;
  const timers = {};
  const later = (key, fn, wait) => { clearTimeout(timers[key]); timers[key] = setTimeout(fn, wait); };
  let frame = 0;
  let live = {};

  // Who may do what: the caller's own level, as the API tells it.
  const manage = connection.access === 'manage';
  const use = manage || connection.access === 'use';
  const writable = !me.read_only;

  // Persistent parts (kept across re-renders so focus and results stay put).
  const title = h('h1');
  const badge = statusBadge(connection.health.status);
  const description = h('p.detail-description');
  const notices = h('div');
  const testRegion = h('div.result', { role: 'status', 'aria-live': 'polite' });
  const reveal = use ? revealer(id) : null;
  const testButton = btn('Test now', testNow, 'primary');
  const actions = h('div.actions', null,
    use ? testButton : null,
    reveal ? reveal.button : null,
    manage && writable ? [h('a.button.button--secondary', { href: `/connections/${id}/edit` }, 'Edit'), btn('Delete', confirmDelete, 'danger')] : null);
  // card.fill(...children) replaces what follows its heading.
  const card = (key, heading, wide) => {
    const el = h('section', { class: `card${wide ? ' card--wide' : ''}`, 'aria-labelledby': `${key}-title` });
    const hd = h('h2', { id: `${key}-title` }, heading);
    return Object.assign(el, { fill: (...children) => replace(el, hd, children) });
  };
  const overview = card('overview', 'Health');
  const settings = card('settings', 'Settings', true);
  const tlsCard = card('tls', 'TLS');
  const serverCard = card('server', 'Server');
  const healthSection = card('health', 'Last 24 hours', true);
  const checksSection = card('checks', 'Recent checks', true);
  healthSection.fill(h('p.muted', null, 'Loading the check history…'));
  const panel = manage && writable ? grantsPanel({
    id, announce: ctx.announce,
    onVersion: (v) => { connection.version = v; },
  }) : null;

  replace(root,
    h('p.breadcrumb', null, h('a', { href: '/connections' }, '← Connections')),
    h('div.page-head.detail-head', null, h('div', null, title, description), badge),
    notices,
    actions,
    testRegion,
    reveal ? reveal.region : null,
    h('div.cards', null, overview, tlsCard, serverCard, settings, healthSection, checksSection, panel ? panel.el : null));

  function renderConnection() {
    const c = connection;
    ctx.title(c.name);
    title.textContent = c.name;
    description.textContent = c.description || '';
    description.hidden = !c.description;
    setStatus(badge, c.health.status);
    renderOverview();
    settings.fill(facts([
      ['Engine', c.engine === 'postgres' ? 'PostgreSQL' : c.engine],
      ['Host', code(c.host)],
      ['Port', c.port],
      ['Database', code(c.database)],
      ['Username', code(c.username)],
      ['Password', set(c.password_set)],
      ['TLS mode', [c.tls.mode, TLS_INSECURE.includes(c.tls.mode) ? h('span.warn-text', null, ' (not verified: insecure)') : null]],
      ['Channel binding', c.tls.channel_binding],
      ['CA certificate', c.tls.ca_cert_pem ? 'custom (PEM set)' : 'public roots'],
      ['Client certificate', set(!!c.tls.client_cert_pem)],
      ['Client key', set(c.client_key_set)],
      ['Connect timeout', ms(c.options.connect_timeout_ms)],
      c.options.application_name ? ['Application name', c.options.application_name] : null,
      ['Tags', tagList(c.tags)],
      ['Monitoring', c.monitoring.enabled ? `every ${c.monitoring.interval_s} s` : 'off'],
      ['Slow above', ms(c.monitoring.slow_ms)],
      ['Owner', c.owner ? (c.owner === me.id ? 'you' : code(c.owner)) : 'none (managed by admins)'],
      ['Created', dateTime(c.created_at)],
      ['Changed', `${dateTime(c.updated_at)} (version ${c.version})`],
    ], 'facts--two'));
    renderFacts();
  }

  function renderOverview() {
    const hl = connection.health;
    overview.fill(facts([
      ['Status', statusBadge(hl.status)],
      ['Last check', [h('span.js-age', null, age(hl.checked_at)), hl.checked_at && h('span.sub', null, dateTime(hl.checked_at))]],
      ['Latency', hl.error_kind ? '—' : ms(hl.latency_ms)],
      hl.error_kind && ['Last error', kindText(hl.error_kind)],
      ['Uptime (24 h)', pct(hl.uptime_24h)],
    ]));
  }

  // TLS and server facts: from the last successful check, or from a test run here.
  function renderFacts() {
    const f = connection.facts;
    const fromTest = lastReport && lastReport.ok;
    const { tls, server } = (fromTest ? lastReport : f) || {};
    const source = fromTest ? 'From the test just run.' : f && `From the check of ${dateTime(f.at)}.`;
    const none = !f && 'No successful check yet.';
    const expiry = tls && tls.peer_not_after;
    const when = expiry && `${days(expiry)} (${dateTime(expiry)})`;
    const left = (Date.parse(expiry) - Date.now()) / 86400000;
    replace(notices,
      deleted && notice('error', 'This connection was deleted.', h('p', null, h('a', { href: '/connections' }, 'Back to connections'))),
      left < 0 && notice('error', `The server’s certificate expired ${when}.`),
      left >= 0 && left <= 30 && notice('warning', h('p', null, h('strong', null, 'Certificate expires soon: '), `the server’s certificate expires ${when}.`)));
    tlsCard.fill(tls ? [facts([
      ['Protocol', tls.protocol || '—'],
      ['Cipher', code(tls.cipher)],
      ['Certificate subject', code(tls.peer_subject)],
      ['Certificate expires', when || '—'],
    ]), h('p.muted', null, source)]
      : h('p', null, connection.tls.mode === 'disable' ? 'TLS is off for this connection (mode disable).'
        : none || 'The last successful check used no TLS.'));
    serverCard.fill(server ? [facts([
      ['Version', server.version],
      ['Role', server.in_recovery ? 'standby (in recovery)' : 'primary'],
      ['Connections', server.connections_used != null && server.max_connections
        ? `${server.connections_used} in use of ${server.max_connections}` : 'not readable'],
    ]), h('p.muted', null, source)]
      : h('p', null, none || 'No server facts recorded.'));
  }

  function renderHistory(history) {
    healthSection.fill(healthChart(history, { limited: history.checks.length >= HISTORY_LIMIT }));
    const checks = history.checks.slice(0, 20);
    checksSection.fill(checks.length ? table('Recent checks, newest first',
      ['Time', 'Status', ['Latency', 'num'], 'Error', 'Step', ['Hint', 'hint-col']],
      checks.map((c) => h('tr', null,
        h('td.nowrap.stack-full', null, dateTime(c.at)),
        h('td', null, statusBadge(c.status)),
        h('td.num', { dataset: { label: 'Latency' } }, ms(c.latency_ms)),
        c.ok ? h('td.hide-narrow', null, 'none') : h('td', { dataset: { label: 'Error' } }, c.error_kind ? kindText(c.error_kind) : '—'),
        h('td', { class: c.step ? null : 'hide-narrow', dataset: { label: 'Step' } }, c.step ? stepName(c.step) : '—'),
        h('td', { class: `hint-col${c.hint ? ' stack-full' : ' hide-narrow'}`, dataset: { label: 'Hint' } }, c.hint || '—'))), 'table--stack')
      : h('p', null, 'No checks yet.'));
  }

  async function loadHistory() {
    try {
      const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
      const { data } = await get(`/connections/${id}/health`, { since, limit: HISTORY_LIMIT });
      if (ctx.current) renderHistory(data);
    } catch (e) {
      if (!isStatus(e, 401)) healthSection.fill(notice('error', describe(e)));
    }
  }

  async function reload() {
    try {
      connection = (await get(`/connections/${id}`)).data;
      if (!ctx.current) return;
      renderConnection();
      if (panel) panel.load().catch(() => {});
    } catch (e) {
      if (isStatus(e, 404)) gone();
      else if (!isStatus(e, 401)) replace(notices, notice('error', describe(e)));
    }
  }

  function gone() {
    deleted = true;
    for (const b of actions.querySelectorAll('a, button')) {
      if (b.tagName === 'A') b.remove(); else b.disabled = true;
    }
    if (reveal) reveal.hide();
    renderFacts();
    ctx.announce('This connection was deleted.');
  }

  async function testNow() {
    testButton.disabled = true;
    replace(testRegion, h('p.testing', null, 'Testing the connection…'));
    try {
      const { data } = await post(`/connections/${id}/test`);
      if (!ctx.current) return;
      lastReport = data;
      replace(testRegion, h('h2', null, 'Test result'), waterfall(data));
      renderFacts();
    } catch (e) {
      if (isStatus(e, 401)) return;
      replace(testRegion, notice('error', describe(e)));
      if (isStatus(e, 429) && e.retryAfter) {
        setTimeout(() => { testButton.disabled = false; }, e.retryAfter * 1000);
        return;
      }
    }
    testButton.disabled = false;
  }

  function confirmDelete() {
    const confirmField = field({ label: 'Type the name to confirm', name: 'confirm' });
    const problem = h('div');
    const dialog = openDialog({
      title: `Delete ${connection.name}?`,
      content: [
        h('p', null, 'This deletes the connection, its stored password and its check history. It cannot be undone.'),
        h('p', null, 'Type ', h('strong.mono', null, connection.name), ' to confirm.'),
        problem,
        confirmField.el,
      ],
      actions: [
        { label: 'Cancel', onClick: (d) => d.close() },
        { label: 'Delete connection', kind: 'danger', disabled: true, onClick: remove },
      ],
    });
    const button = dialog.buttons[1];
    const sync = () => { button.disabled = confirmField.input.value !== connection.name; };
    confirmField.input.addEventListener('input', sync);
    confirmField.input.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !button.disabled) { e.preventDefault(); remove(dialog); } });

    async function remove(d) {
      if (confirmField.input.value !== connection.name) return;
      button.disabled = true;
      try {
        await del(`/connections/${id}`, connection.version);
        d.close();
        ctx.announce(`Deleted ${connection.name}.`);
        ctx.navigate('/connections');
      } catch (e) {
        if (isStatus(e, 404)) { d.close(); gone(); return; }
        const changed = isStatus(e, 412);
        replace(problem, notice('error', changed ? 'This connection changed meanwhile. It has been reloaded: check it, then confirm again.' : describe(e)));
        if (changed) await reload();
        sync();
      }
    }
  }

  function flush() {
    frame = 0;
    const hl = connection.health;
    const before = hl.status;
    if (applyLive(hl, live)) {
      if (hl.status !== before) ctx.announce(`${connection.name} is now ${hl.status}.`);
      setStatus(badge, hl.status);
      renderOverview();
    }
    live = {};
  }

  function onEvent(event) {
    const { type } = event;
    if (type === 'resync') later('refetch', () => { reload(); loadHistory(); }, 300);
    if (event.id !== id || deleted) return;
    if (type === 'connection_changed') later('refetch', reload, 300);
    else if (type === 'connection_deleted') gone();
    else if (type === 'status_changed' || type === 'checked') {
      liveUpdate(event, live);
      if (!frame) frame = requestAnimationFrame(flush);
      later('history', loadHistory, 2000);
    }
  }

  renderConnection();
  const unsubscribe = subscribe(onEvent);
  const ticker = setInterval(() => {
    const el = overview.querySelector('.js-age');
    if (el && connection.health.checked_at) el.textContent = age(connection.health.checked_at);
  }, 5000);
  if (panel) panel.load().catch((e) => replace(panel.el, h('h2', { id: 'grants-title' }, 'Access'), h('p', null, describe(e))));
  loadHistory();

  return () => {
    unsubscribe();
    clearInterval(ticker);
    Object.values(timers).forEach(clearTimeout);
    if (frame) cancelAnimationFrame(frame);
    if (reveal) reveal.hide();
  };
}
