// Teams (/teams): everyone sees them and their members; admins create, edit and delete them.

import { h, replace } from '../dom.js';
import { get, post, put, del } from '../api.js';
import { field, checkbox, showApiError, formOf } from '../components/field.js';
import { openDialog, confirm } from '../components/dialog.js';
import { notice, refuse, loadOr, people, table, hidden, btn, section } from '../components/page-kit.js';

export async function mount(root, ctx) {
  ctx.title('Teams');
  if (!ctx.can('teams.list')) return refuse(root, ctx, 'Teams', 'Your account may not see teams.');
  const admin = ctx.can('teams.manage');
  const loaded = await loadOr(root, ctx, 'Teams', 'the teams', () => Promise.all([get('/teams'), people(ctx)]));
  if (!loaded) return;
  let teams = loaded[0].data;
  const users = (loaded[1] || []).sort((a, b) => a.username.localeCompare(b.username));
  const nameOf = new Map(users.map((u) => [u.id, u.username]));
  const message = h('div', { 'aria-live': 'polite' });
  const listBox = h('div');
  const heading = h('h2', { id: 'teams-list' });
  const say = (text) => { replace(message, notice('ok', text)); ctx.announce(text); };
  const memberName = (id) => (id === ctx.me.id ? `${ctx.me.username} (you)` : nameOf.get(id) || `user ${id.slice(0, 8)}…`);
  // Without a list of names (the directory is not readable), a count says as much.
  const members = (t) => {
    if (!t.members.length) return h('span.muted', null, 'no members');
    if (users.length) return t.members.map(memberName).sort().join(', ');
    const n = `${t.members.length} member${t.members.length === 1 ? '' : 's'}`;
    return t.members.includes(ctx.me.id) ? `${n}, you among them` : n;
  };

  function teamFields(team, hint) {
    const name = field({ label: 'Team name', name: 'name', value: team.name, hint });
    const boxes = users.map((u) => ({ id: u.id, box: checkbox({ label: u.username, name: `member-${u.id}`, checked: team.members.includes(u.id) }) }));
    const keep = team.members.filter((id) => !nameOf.has(id));
    return {
      fields: { name },
      members: h('fieldset.members', null, h('legend', null, 'Members'),
        boxes.length ? boxes.map((b) => b.box.el) : h('p.muted', null, 'No users to pick from.')),
      body: () => ({ name: name.input.value.trim(), members: [...keep, ...boxes.filter((b) => b.box.input.checked).map((b) => b.id)] }),
      reset: () => { name.input.value = ''; for (const b of boxes) b.box.input.checked = false; },
    };
  }

  function editDialog(team) {
    const f = teamFields(team);
    const summary = h('div');
    openDialog({
      title: `Edit team ${team.name}`,
      content: [summary, f.fields.name.el, f.members],
      actions: [
        { label: 'Save team', kind: 'primary', onClick: async (c) => {
          try {
            const r = await put(`/teams/${team.id}`, f.body());
            teams = teams.map((t) => (t.id === team.id ? r.data : t));
            renderList();
            c.close();
            say(`Saved team ${r.data.name}.`);
          } catch (e) { showApiError(summary, f.fields, e, e.field || 'name'); }
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
        say(`Deleted team ${team.name}.`);
      },
    });
  }

  function renderList() {
    heading.textContent = `Teams (${teams.length})`;
    if (!teams.length) {
      replace(listBox, h('p.empty', null, admin ? 'No teams yet: create one below.' : 'No teams yet.'));
      return;
    }
    const rows = teams.sort((a, b) => a.name.localeCompare(b.name)).map((t) => h('tr', null,
      h('td', null, t.name),
      h('td', null, members(t)),
      admin && h('td', null, h('div.inline-actions', null,
        btn(['Edit', hidden(` team ${t.name}`)], () => editDialog(t), 'secondary small'),
        btn(['Delete', hidden(` team ${t.name}`)], () => removeTeam(t), 'danger small')))));
    replace(listBox, table('Teams', ['Team', 'Members', admin && 'Actions'].filter(Boolean), rows, 'table--wide'));
  }

  const f = teamFields({ name: '', members: [] }, '1–64 of a–z, 0–9, “_”, “.”, “@”, “-”.');
  const { form } = formOf({
    fields: f.fields,
    label: 'Create team',
    extra: f.members,
    conflict: 'name',
    check: () => [!f.fields.name.input.value.trim() && { key: 'name', message: 'Enter a team name' }],
    send: async () => {
      const r = await post('/teams', f.body());
      teams.push(r.data);
      renderList();
      f.reset();
      say(`Created team ${r.data.name}.`);
    },
  });

  replace(root,
    h('h1', null, 'Teams'),
    admin ? null : h('p.lead', null, 'Teams group users for connection grants. Only admins change them.'),
    message,
    section('teams-list', heading, listBox),
    admin && section('teams-new', 'New team', form));
  renderList();
}
