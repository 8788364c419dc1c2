// Teams (/teams): every signed-in user sees the teams and their members (to pick grantees);
// admins create them, change their name and members, and delete them.

import { h, replace } from '../dom.js';
import { get, post, put, del, ApiError, describe } from '../api.js';
import { field } from '../components/field.js';
import { openDialog } from '../components/dialog.js';
import { notice, refuse, loadError, checkbox, showErrors, fieldMessage, tableWrap, confirm, hidden, btn } from '../components/page-kit.js';

/** Users as {id, username}: the admin list, else the directory, else none (ids are shown). */
async function loadUsers(admin) {
  try {
    if (admin) return (await get('/users')).data.map((u) => ({ id: u.id, username: u.username }));
    return (await get('/directory', { q: '' })).data.users || [];
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) throw e;
    return [];
  }
}

export async function mount(root, ctx) {
  ctx.title('Teams');
  if (!ctx.can('teams.list')) {
    refuse(root, ctx, 'Teams', 'Your account may not see teams.');
    return;
  }
  const admin = ctx.can('teams.manage');
  let teams;
  let users;
  try {
    [teams, users] = await Promise.all([get('/teams').then((r) => r.data), loadUsers(ctx.can('users'))]);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) throw e;
    refuse(root, ctx, 'Teams', loadError(e, 'the teams'));
    return;
  }
  if (!ctx.current) return;
  const nameOf = new Map(users.map((u) => [u.id, u.username]));
  const message = h('div', { 'aria-live': 'polite' });
  const listBox = h('div');
  const heading = h('h2', { id: 'teams-list' });
  const say = (kind, text) => { replace(message, notice(kind, text)); ctx.announce(text); };
  const memberName = (id) => (id === ctx.me.id ? `${ctx.me.username} (you)` : nameOf.get(id) || `user ${id.slice(0, 8)}…`);
  // Without a list of names (the directory is not readable), a count says as much.
  const members = (t) => {
    if (!t.members.length) return h('span', { class: 'muted' }, 'no members');
    if (users.length) return t.members.map(memberName).sort().join(', ');
    const n = `${t.members.length} member${t.members.length === 1 ? '' : 's'}`;
    return t.members.includes(ctx.me.id) ? `${n}, you among them` : n;
  };
  const sortTeams = () => teams.sort((a, b) => a.name.localeCompare(b.name));

  /** A fieldset of member checkboxes: {el, selected()}. */
  function memberPicker(selected) {
    const boxes = [...users].sort((a, b) => a.username.localeCompare(b.username))
      .map((u) => ({ id: u.id, box: checkbox({ label: u.username, name: `member-${u.id}`, checked: selected.includes(u.id) }) }));
    const el = h('fieldset', { class: 'members' }, h('legend', null, 'Members'),
      boxes.length ? boxes.map((b) => b.box.el) : h('p', { class: 'muted' }, 'No users to pick from.'));
    const keep = selected.filter((id) => !nameOf.has(id));
    return { el, selected: () => [...keep, ...boxes.filter((b) => b.box.input.checked).map((b) => b.id)] };
  }

  function apiFieldError(nameField, summary, e) {
    if (e instanceof ApiError && (e.status === 400 || e.status === 409) && (!e.field || e.field === 'name')) {
      showErrors(summary, { name: nameField }, [{ key: 'name', message: fieldMessage('The team name', e.message) }]);
    } else {
      showErrors(summary, { name: nameField }, [{ key: null, message: describe(e) }]);
    }
  }

  function editDialog(team) {
    const summary = h('div');
    const name = field({ label: 'Team name', name: 'team-name', value: team.name, autocomplete: 'off' });
    const picker = memberPicker(team.members);
    openDialog({
      title: `Edit team ${team.name}`,
      content: h('div', null, summary, name.el, picker.el),
      actions: [
        { label: 'Save team', kind: 'primary', onClick: async (c) => {
          try {
            const r = await put(`/teams/${team.id}`, { name: name.input.value.trim(), members: picker.selected() });
            teams = teams.map((t) => (t.id === team.id ? r.data : t));
            renderList();
            c.close();
            say('ok', `Saved team ${r.data.name}.`);
          } catch (e) { apiFieldError(name, summary, e); }
        } },
        { label: 'Cancel', onClick: (c) => c.close() },
      ],
    });
  }

  function removeTeam(team) {
    confirm({
      title: `Delete team ${team.name}?`,
      text: 'Its members stay; every grant the team held is removed.',
      label: 'Delete team',
      onConfirm: async () => {
        await del(`/teams/${team.id}`);
        teams = teams.filter((t) => t.id !== team.id);
        renderList();
        say('ok', `Deleted team ${team.name}.`);
      },
    });
  }

  function renderList() {
    heading.textContent = `Teams (${teams.length})`;
    if (!teams.length) {
      replace(listBox, h('p', { class: 'empty' }, admin ? 'No teams yet: create one below.' : 'No teams yet.'));
      return;
    }
    const rows = sortTeams().map((t) => h('tr', null,
      h('td', null, t.name),
      h('td', null, members(t)),
      admin ? h('td', null, h('div', { class: 'inline-actions' },
        btn('Edit', () => editDialog(t), 'secondary', hidden(` team ${t.name}`)),
        btn('Delete', () => removeTeam(t), 'danger', hidden(` team ${t.name}`)))) : null));
    replace(listBox, tableWrap('Teams', ['Team', 'Members', admin ? 'Actions' : null].filter(Boolean), rows));
  }

  let createSection = null;
  if (admin) {
    const summary = h('div');
    const name = field({ label: 'Team name', name: 'name', autocomplete: 'off', hint: '1–64 of a–z, 0–9, “_”, “.”, “@”, “-”.', attrs: { spellcheck: 'false' } });
    let picker = memberPicker([]);
    const pickerBox = h('div', null, picker.el);
    const button = h('button', { type: 'submit', class: 'button button--primary' }, 'Create team');
    const form = h('form', { class: 'admin-form', novalidate: true }, summary, name.el, pickerBox, button);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!name.input.value.trim()) {
        showErrors(summary, { name }, [{ key: 'name', message: 'Enter a team name' }]);
        return;
      }
      button.disabled = true;
      try {
        const r = await post('/teams', { name: name.input.value.trim(), members: picker.selected() });
        teams.push(r.data);
        renderList();
        name.input.value = '';
        picker = memberPicker([]);
        replace(pickerBox, picker.el);
        showErrors(summary, { name }, []);
        say('ok', `Created team ${r.data.name}.`);
      } catch (err) {
        apiFieldError(name, summary, err);
      } finally {
        button.disabled = false;
      }
    });
    createSection = h('section', { class: 'admin-section', 'aria-labelledby': 'teams-new' },
      h('h2', { id: 'teams-new' }, 'New team'), form);
  }

  replace(root,
    h('h1', null, 'Teams'),
    admin ? null : h('p', { class: 'lead' }, 'Teams group users for connection grants. Only admins change them.'),
    message,
    h('section', { class: 'admin-section', 'aria-labelledby': 'teams-list' }, heading, listBox),
    createSection);
  renderList();
}
