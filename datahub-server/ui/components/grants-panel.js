// A connection's grants (users and teams; view, use, manage): each change PUTs the whole set
// with the ETag; grantees come from GET /directory.

import { h, replace } from '../dom.js';
import { get, put, describe, isStatus } from '../api.js';
import { field, selectField } from './field.js';
import { notice, table, hidden, btn, submit } from './page-kit.js';

const LEVELS = [
  ['view', 'view — see it and its health'],
  ['use', 'use — also test it and reveal its password'],
  ['manage', 'manage — also edit, delete and share it'],
];

const keyOf = (g) => (g.user_id ? `u:${g.user_id}` : `t:${g.team_id}`);
const granteeOf = (key) => ({ [key[0] === 'u' ? 'user_id' : 'team_id']: key.slice(2) });

/** The panel for connection `id`; `onVersion(v)` hears the connection's new version after a change. */
export function grantsPanel({ id, onVersion, announce }) {
  const names = new Map(); // key → name, from the directory
  let grants = [];
  let etag = null;
  let busy = false;
  let searchTimer = 0;
  let searchController = null;

  const message = h('div');
  const list = h('div');
  const level = selectField({ label: 'Level', name: 'level', options: LEVELS, attrs: { id: 'grant-level' } });
  const search = field({ label: 'Find a user or team', name: 'q', type: 'search', hint: 'Type part of a name, then choose below' });
  const pick = selectField({ label: 'User or team', name: 'grantee' });
  const addButton = submit('Add access', 'secondary');
  const form = h('form.grant-form', { on: { submit: add } },
    h('h3', null, 'Add access'), h('div.grid', null, search.el, pick.el, level.el), addButton);
  const el = h('section.card.card--wide.grants', { 'aria-labelledby': 'grants-title' },
    h('h2', { id: 'grants-title' }, 'Access'),
    h('p.muted', null, 'Admins and the owner can always manage it. Grants give other users and teams access.'),
    message, list, form);

  const nameOf = (g) => g.name || names.get(keyOf(g)) || (g.user_id ? `user ${g.user_id}` : `team ${g.team_id}`);
  const say = (text) => replace(message, text && notice('error', text));

  // A re-render (after a save or a reload) keeps the focus on the same control.
  function renderList() {
    const controls = () => [...list.querySelectorAll('select, button')];
    const focused = controls().indexOf(document.activeElement);
    paint();
    if (focused >= 0 && controls()[focused]) controls()[focused].focus();
  }

  function paint() {
    if (!grants.length) {
      replace(list, h('p', null, 'No grants: only admins and the owner can see this connection.'));
      return;
    }
    replace(list, table('Grants', ['User or team', 'Level', [hidden('Actions'), 'num']], grants.map((g, i) => {
      const who = nameOf(g);
      const select = h('select.input.input--inline', { 'aria-label': `Access level for ${who}`, disabled: busy },
        LEVELS.map(([l]) => h('option', null, l)));
      select.value = g.level;
      select.addEventListener('change', () => save(grants.map((x, j) => (j === i ? { ...x, level: select.value } : x)),
        `${who} now has ${select.value} access.`));
      const remove = btn(['Remove', hidden(` ${who}`)], () => save(grants.filter((_, j) => j !== i), `Removed ${who}’s access.`, addButton), 'secondary small');
      remove.disabled = busy;
      return h('tr', null, h('td.stack-full', null, who, h('span.sub', null, g.user_id ? 'User' : 'Team')), h('td', null, select), h('td.num', null, remove));
    }), 'table--stack'));
  }

  async function lookup() {
    if (searchController) searchController.abort();
    searchController = new AbortController();
    let users = [];
    let teams = [];
    try {
      ({ users, teams } = (await get('/directory', { q: search.input.value.trim() }, { signal: searchController.signal })).data);
    } catch (e) {
      if (e && e.name === 'AbortError') return;
    }
    users.forEach((u) => names.set(`u:${u.id}`, u.username));
    teams.forEach((t) => names.set(`t:${t.id}`, t.name));
    replace(pick.input,
      users.length ? h('optgroup', { label: 'Users' }, users.map((u) => h('option', { value: `u:${u.id}` }, u.username))) : null,
      teams.length ? h('optgroup', { label: 'Teams' }, teams.map((t) => h('option', { value: `t:${t.id}` }, t.name))) : null,
      !users.length && !teams.length ? h('option', { value: '' }, 'No match') : null);
  }
  search.input.addEventListener('input', () => { clearTimeout(searchTimer); searchTimer = setTimeout(lookup, 250); });

  function add(e) {
    e.preventDefault();
    const key = pick.input.value;
    if (!key) { say('Choose a user or team first.'); return; }
    const next = grants.filter((g) => keyOf(g) !== key).concat([{ ...granteeOf(key), level: level.input.value }]);
    save(next, `Gave ${names.get(key)} ${level.input.value} access.`, addButton);
  }

  async function load() {
    const { data, etag: tag } = await get(`/connections/${id}/grants`);
    grants = data.grants || [];
    etag = tag;
    renderList();
    if (!names.size) lookup();
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
      announce(done);
    } catch (e) {
      busy = false;
      if (isStatus(e, 412)) {
        say('Someone else changed these grants meanwhile. They have been reloaded: check them and try again.');
        try { await load(); } catch (err) { say(describe(err)); }
      } else {
        say(describe(e));
        renderList();
      }
    }
    if (refocus) refocus.focus();
  }

  return { el, load };
}
