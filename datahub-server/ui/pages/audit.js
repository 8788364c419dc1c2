// Audit log (/audit): filters and page in the URL, entries newest first, "Verify chain".

import { h, replace } from '../dom.js';
import { get, describe, isStatus } from '../api.js';
import { field, selectField, showErrors, showApiError } from '../components/field.js';
import { dateTime, count } from '../format.js';
import { notice, refuse, people, table, hidden, btn, submit } from '../components/page-kit.js';

const PER_PAGE = 50;
const ACTIONS = ['auth.login', 'auth.logout', 'connection.create', 'connection.update', 'connection.delete',
  'connection.test', 'connection.test_draft', 'connection.reveal', 'grants.write', 'user.create', 'user.update',
  'user.change_password', 'team.manage', 'token.create', 'token.revoke', 'token.manage', 'policy.write',
  'audit.verify', 'keys.rotate', 'keys.retire'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A datetime-local value (local time) as UTC RFC 3339, and back; '' when blank or invalid.
const toUtc = (local) => { const t = Date.parse(local); return local && !Number.isNaN(t) ? new Date(t).toISOString().replace('.000Z', 'Z') : ''; };
const toLocal = (iso) => {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? '' : new Date(t - new Date(t).getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

export async function mount(root, ctx) {
  ctx.title('Audit log');
  if (!ctx.can('audit')) return refuse(root, ctx, 'Audit log', 'Only admins and auditors read the audit log.');
  const users = await people(ctx);
  if (!ctx.current) return;
  const q = ctx.query;
  const filters = Object.fromEntries(['actor', 'action', 'target', 'since', 'until'].map((k) => [k, q.get(k) || '']));
  let page = Math.max(1, Number.parseInt(q.get('page'), 10) || 1);

  const F = {
    actor: users
      ? selectField({
        label: 'Actor', name: 'actor', value: filters.actor,
        options: [['', 'Anyone'], ...[...users].sort((a, b) => a.username.localeCompare(b.username)).map((u) => [u.id, u.username])],
      })
      : field({ label: 'Actor', name: 'actor', value: filters.actor, hint: 'A user id; or pick a name in the table below.' }),
    action: field({ label: 'Action', name: 'action', value: filters.action, hint: 'Exact, e.g. connection.update.', attrs: { list: 'audit-actions' } }),
    target: field({ label: 'Connection', name: 'target', value: filters.target, hint: 'A connection id, or any target such as user:<id>.' }),
    since: field({ label: 'From', name: 'since', type: 'datetime-local', value: toLocal(filters.since), hint: 'Local time; entries at or after it.' }),
    until: field({ label: 'To', name: 'until', type: 'datetime-local', value: toLocal(filters.until), hint: 'Local time; entries before it.' }),
  };
  if (users && filters.actor && !users.some((u) => u.id === filters.actor)) {
    F.actor.input.append(h('option', { value: filters.actor }, `user ${filters.actor}`));
    F.actor.input.value = filters.actor;
  }
  const summary = h('div');
  const results = h('div', { 'aria-live': 'polite', 'aria-busy': 'false' });
  const verifyResult = h('div', { role: 'status' });
  const verifyButton = btn('Verify chain', verify);
  const form = h('form', { novalidate: true, 'aria-label': 'Filter the audit log', on: { submit: (e) => { e.preventDefault(); apply(); } } },
    summary,
    h('div.grid', null, Object.values(F).map((f) => f.el)),
    h('datalist', { id: 'audit-actions' }, ACTIONS.map((a) => h('option', { value: a }))),
    h('div.actions', null,
      submit('Apply filters'),
      btn('Clear filters', clearFilters, 'link')));

  const targetOf = (text) => (UUID.test(text.trim()) ? 'connection:' : '') + text.trim();

  const reset = () => { page = 1; load(); };

  function apply() {
    const next = {
      actor: F.actor.input.value.trim(), action: F.action.input.value.trim(), target: targetOf(F.target.input.value),
      since: toUtc(F.since.input.value), until: toUtc(F.until.input.value),
    };
    const errs = [];
    if (next.actor && !UUID.test(next.actor)) errs.push({ key: 'actor', message: 'The actor must be a user id (a UUID)' });
    for (const k of ['since', 'until']) if (F[k].input.validity.badInput) errs.push({ key: k, message: `Enter a full date and time in ${F[k].label}` });
    if (next.since && next.until && next.until <= next.since) errs.push({ key: 'until', message: 'To must be later than From' });
    showErrors(summary, F, errs);
    if (errs.length) return;
    Object.assign(filters, next);
    F.target.input.value = next.target;
    reset();
  }

  function clearFilters() {
    for (const k of Object.keys(filters)) { filters[k] = ''; F[k].input.value = ''; }
    showErrors(summary, F, []);
    reset();
  }

  function targetCell(target) {
    if (!target) return h('span.muted', null, '—');
    const m = /^connection:([0-9a-f-]{36})$/i.exec(target);
    return m ? h('a', { href: `/connections/${m[1]}`, class: 'mono' }, target) : h('span.mono', null, target);
  }

  // An actor's name filters by that actor: the way to pick one when no user list is readable.
  function actorCell(e) {
    if (!e.actor) return h('span.muted', null, e.actor_name || 'system');
    if (filters.actor === e.actor) return e.actor_name;
    return h('button', {
      type: 'button', class: 'button button--link',
      on: { click: () => { F.actor.input.value = e.actor; if (F.actor.input.value !== e.actor) F.actor.input.append(h('option', { value: e.actor, selected: true }, e.actor_name)); apply(); } },
    }, e.actor_name || e.actor, hidden(': show only their entries'));
  }

  let seq = 0;
  async function load() {
    ctx.setQuery({ ...filters, page: page > 1 ? page : null });
    const mine = ++seq;
    results.setAttribute('aria-busy', 'true');
    try {
      const { data } = await get('/audit', { ...filters, page, per_page: PER_PAGE });
      if (mine !== seq || !ctx.current) return;
      render(data);
    } catch (e) {
      if (mine !== seq) return;
      if (isStatus(e, 400) && F[e.field]) {
        showApiError(summary, F, e);
        replace(results);
      } else {
        replace(results, notice('error', isStatus(e, 403) ? 'Your account may not see the audit log.' : describe(e)));
      }
    } finally {
      if (mine === seq) results.setAttribute('aria-busy', 'false');
    }
  }

  function render(data) {
    const pages = Math.max(1, Math.ceil(data.total / data.per_page));
    const filtered = Object.values(filters).some(Boolean);
    if (!data.items.length) {
      replace(results, h('p.empty', null, filtered ? 'No entries match these filters.' : 'The audit log is empty.'));
      return;
    }
    const rows = data.items.map((e) => h('tr', null,
      h('td.nowrap', null, dateTime(e.at)),
      h('td', null, actorCell(e)),
      h('td.mono.nowrap', null, e.action),
      h('td', null, targetCell(e.target)),
      h('td', null, h('span', { class: `pill pill--${e.outcome === 'ok' ? 'ok' : 'bad'}` }, e.outcome)),
      h('td', null, e.changed_fields.length ? e.changed_fields.join(', ') : h('span.muted', null, '—')),
      h('td.mono', null, e.client_addr || '—'),
      h('td.mono', null, e.request_id || '—')));
    const go = (p) => { page = p; load(); };
    const pager = h('nav.pager', { 'aria-label': 'Audit log pages' },
      btn('Previous page', () => go(data.page - 1), 'secondary small'),
      h('span', null, `Page ${count(data.page)} of ${count(pages)} · ${count(data.total)} ${data.total === 1 ? 'entry' : 'entries'}`),
      btn('Next page', () => go(data.page + 1), 'secondary small'));
    pager.firstChild.disabled = data.page <= 1;
    pager.lastChild.disabled = data.page >= pages;
    replace(results, table(`Audit log, page ${data.page}`, ['Time', 'Actor', 'Action', 'Target', 'Outcome', 'Changed fields', 'Client address', 'Request id'], rows, 'table--wide audit-table'), pager);
  }

  async function verify() {
    verifyButton.disabled = true;
    replace(verifyResult, h('p.muted', null, 'Verifying the chain…'));
    try {
      const { data } = await get('/audit/verify');
      if (data.ok) {
        replace(verifyResult, notice('ok', `The chain verifies: all ${count(data.checked)} entries are intact.`));
      } else {
        const b = data.first_break || {};
        replace(verifyResult, notice('error',
          `The chain breaks at entry #${b.seq} (${b.kind}${b.expected ? `, expected #${b.expected}` : ''}): ${b.message}`,
          `${count(data.checked)} entries verified before it.`));
      }
    } catch (e) {
      replace(verifyResult, notice('error', `Could not verify: ${describe(e)}`));
    } finally {
      verifyButton.disabled = false;
    }
  }

  replace(root,
    h('div.page-head', null, h('h1', null, 'Audit log')),
    h('p.lead', null, 'Every change and refused attempt, newest first, naming changed fields but never their values.'),
    h('div.actions', null, verifyButton), verifyResult,
    form, results);
  await load();
}
