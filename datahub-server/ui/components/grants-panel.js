// A connection's grants (users and teams; view, use, manage): each change PUTs the whole set with the
// ETag; names from GET /directory, or from the team and user lists while that route is absent.

import { h, replace } from '../dom.js';
import { get, put, describe, isStatus } from '../api.js';
import { field, selectField } from './field.js';
import { notice, table, hidden, btn, submit } from './page-kit.js';

const LEVELS = [
  { value: 'view', label: 'view — see it and its health' },
  { value: 'use', label: 'use — also test it and reveal its password' },
  { value: 'manage', label: 'manage — also edit, delete and share it' },
];

const keyOf = (g) => (g.user_id ? `u:${g.user_id}` : `t:${g.team_id}`);
const granteeOf = (key) => (key.startsWith('u:') ? { user_id: key.slice(2) } : { team_id: key.slice(2) });
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The panel for connection `id`; `onVersion(v)` hears the connection's new version after a change. */
export function grantsPanel({ id, canListUsers, onVersion, announce }) {
  const names = new Map(); // key → display name
  let grants = [];
  let etag = null;
  let directory = null; // null: unknown yet; false: route absent
  let busy = false;
  let searchTimer = 0;
  let searchController = null;

  const message = h('div');
  const list = h('div');
  const status = h('p.visually-hidden', { role: 'status' });
  const picker = h('div');
  const el = h('section.card.card--wide.grants', { 'aria-labelledby': 'grants-title' },
    h('h2', { id: 'grants-title' }, 'Access'),
    h('p.muted', null, 'Admins and the owner can always manage it. Grants give other users and teams access.'),
    message, list, picker, status);

  const nameOf = (g) => g.name || names.get(keyOf(g)) || (g.user_id ? `user ${g.user_id}` : `team ${g.team_id}`);

  function say(text, kind = 'error') {
    replace(message, text && notice(kind, text));
  }

  function renderList() {
    if (!grants.length) {
      replace(list, h('p', null, 'No grants: only admins and the owner can see this connection.'));
      return;
    }
    const rows = grants.map((g, i) => {
      const who = nameOf(g);
      const kind = g.user_id ? 'User' : 'Team';
      const level = h('select.input.input--inline', { 'aria-label': `Access level for ${who}`, disabled: busy },
        LEVELS.map((l) => h('option', { value: l.value }, l.value)));
      level.value = g.level;
      level.addEventListener('change', () => {
        const next = grants.map((x, j) => (j === i ? { ...x, level: level.value } : x));
        save(next, `${who} now has ${level.value} access.`, () => level.focus());
      });
      const remove = btn(['Remove', hidden(` ${who}`)], () => save(grants.filter((_, j) => j !== i), `Removed ${who}’s access.`, () => addButton && addButton.focus()), 'secondary small');
      remove.disabled = busy;
      return h('tr', null,
        h('td', null, who, h('span.sub', null, kind)),
        h('td', null, level),
        h('td.num', null, remove));
    });
    replace(list, table('Grants', ['User or team', 'Level', [hidden('Actions'), 'num']], rows));
  }

  let addButton = null;

  function renderPicker() {
    const level = selectField({ label: 'Level', name: 'level', options: LEVELS, attrs: { id: 'grant-level' } });
    addButton = submit('Add access', 'secondary');
    let who;
    let fields;
    if (directory === false && !canListUsers) {
      // No directory to search: enter an id.
      const kind = selectField({ label: 'Kind', name: 'kind', options: [{ value: 'user', label: 'User' }, { value: 'team', label: 'Team' }] });
      const idField = field({ label: 'User or team id', name: 'grantee', hint: 'The id (a UUID) of the user or team' });
      who = () => UUID.test(idField.input.value.trim()) && granteeOf(`${kind.input.value[0]}:${idField.input.value.trim()}`);
      fields = [kind.el, idField.el];
    } else {
      const search = field({ label: 'Find a user or team', name: 'q', type: 'search', hint: 'Type part of a name, then choose below' });
      const pick = selectField({ label: 'User or team', name: 'grantee' });
      const choice = pick.input;
      const fill = (users, teams) => {
        replace(choice,
          users.length ? h('optgroup', { label: 'Users' }, users.map((u) => h('option', { value: `u:${u.id}` }, u.username))) : null,
          teams.length ? h('optgroup', { label: 'Teams' }, teams.map((t) => h('option', { value: `t:${t.id}` }, t.name))) : null,
          !users.length && !teams.length ? h('option', { value: '' }, 'No match') : null);
      };
      const lookup = async () => {
        if (searchController) searchController.abort();
        searchController = new AbortController();
        try {
          const { users, teams } = await find(search.input.value.trim(), searchController.signal);
          fill(users, teams);
        } catch (e) {
          if (e && e.name === 'AbortError') return;
          fill([], []);
        }
      };
      search.input.addEventListener('input', () => { clearTimeout(searchTimer); searchTimer = setTimeout(lookup, 250); });
      lookup();
      who = () => choice.value && granteeOf(choice.value);
      fields = [search.el, pick.el];
    }
    const form = h('form', {
      class: 'grant-form',
      on: {
        submit: (e) => {
          e.preventDefault();
          const grantee = who();
          if (!grantee) { say('Choose a user or team first (or enter a valid id).'); return; }
          const key = keyOf(grantee);
          const next = grants.filter((g) => keyOf(g) !== key).concat([{ ...grantee, level: level.input.value }]);
          save(next, `Gave ${names.get(key) || 'them'} ${level.input.value} access.`, () => addButton.focus());
        },
      },
    },
    h('h3', null, 'Add access'),
    h('div.grid', null, fields, level.el),
    addButton);
    replace(picker, form);
  }

  async function find(q, signal) {
    if (directory !== false) {
      try {
        const { data } = await get('/directory', { q }, { signal });
        directory = true;
        const users = data.users || [];
        const teams = data.teams || [];
        users.forEach((u) => names.set(`u:${u.id}`, u.username));
        teams.forEach((t) => names.set(`t:${t.id}`, t.name));
        return { users, teams };
      } catch (e) {
        if (!isStatus(e, 404)) throw e;
        directory = false;
      }
    }
    const needle = q.toLowerCase();
    const [teams, users] = await Promise.all([
      get('/teams', null, { signal }).then((r) => r.data, () => []),
      canListUsers ? get('/users', null, { signal }).then((r) => r.data, () => []) : [],
    ]);
    teams.forEach((t) => names.set(`t:${t.id}`, t.name));
    users.forEach((u) => names.set(`u:${u.id}`, u.username));
    return {
      users: users.filter((u) => !u.disabled && u.username.toLowerCase().includes(needle)).slice(0, 50),
      teams: teams.filter((t) => t.name.toLowerCase().includes(needle)).slice(0, 50),
    };
  }

  async function load() {
    const { data, etag: tag } = await get(`/connections/${id}/grants`);
    grants = data.grants || [];
    etag = tag;
    if (grants.some((g) => !g.name)) {
      try { await find(''); } catch { /* ids are shown instead of names */ }
    }
    renderList();
    if (!picker.firstChild) renderPicker();
  }

  async function save(next, done, refocus) {
    if (busy) return;
    busy = true;
    say(null);
    try {
      const body = { grants: next.map((g) => ({ ...granteeOf(keyOf(g)), level: g.level })) };
      const { data, etag: tag } = await put(`/connections/${id}/grants`, body, etag);
      grants = data.grants || [];
      etag = tag;
      if (onVersion && tag !== null) onVersion(tag);
      busy = false;
      renderList();
      status.textContent = done;
      if (announce) announce(done);
    } catch (e) {
      busy = false;
      if (isStatus(e, 412)) {
        say('Someone else changed these grants (or the connection) meanwhile. They have been reloaded: check them and make your change again.');
        try { await load(); } catch (err) { say(describe(err)); }
      } else {
        say(describe(e));
        renderList();
      }
    }
    if (refocus) refocus();
  }

  return { el, load };
}
