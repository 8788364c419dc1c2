// Users (/users, admins): create, change role, disable/enable, reset password; passwords never kept.

import { h, replace } from '../dom.js';
import { get, post, patch, describe, isStatus } from '../api.js';
import { field, selectField, formOf, fieldMessage } from '../components/field.js';
import { openDialog } from '../components/dialog.js';
import { dateTime } from '../format.js';
import { notice, refuse, loadOr, table, hidden, btn, section } from '../components/page-kit.js';

const ROLE_HINT = 'admin: everything; editor: creates connections; viewer: uses granted connections; auditor: reads the audit log.';
const roleField = (value) => selectField({
  label: 'Role', name: 'role', value, hint: ROLE_HINT, options: ['admin', 'editor', 'viewer', 'auditor'],
});

export async function mount(root, ctx) {
  ctx.title('Users');
  if (!ctx.can('users')) return refuse(root, ctx, 'Users', 'Only admins manage user accounts.');
  let users = await loadOr(root, ctx, 'Users', 'the user accounts', () => get('/users').then((r) => r.data));
  if (!users) return;
  const writable = ctx.can('users.manage');
  const message = h('div', { 'aria-live': 'polite' });
  const listBox = h('div');
  const heading = h('h2', { id: 'users-list' });
  const say = (kind, text) => { replace(message, notice(kind, text)); if (kind === 'ok') ctx.announce(text); };

  async function change(user, body, done) {
    try {
      const r = await patch(`/users/${user.id}`, body);
      users = users.map((u) => (u.id === user.id ? r.data : u));
      renderList();
      say('ok', done);
      return true;
    } catch (e) {
      say('error', describe(e));
      return false;
    }
  }

  function roleDialog(user) {
    const role = roleField(user.role);
    openDialog({
      title: `Change the role of ${user.username}`,
      content: role.el,
      actions: [
        { label: 'Change role', kind: 'primary', onClick: async (c) => {
          if (role.input.value === user.role) { c.close(); return; }
          if (await change(user, { role: role.input.value }, `${user.username} is now ${role.input.value}.`)) c.close();
          else role.setError(message.textContent);
        } },
        { label: 'Cancel', onClick: (c) => c.close() },
      ],
    });
  }

  function resetDialog(user) {
    const pw = field({ label: 'New password', name: 'new_password', type: 'password', autocomplete: 'new-password', hint: '12 to 1,024 characters. Tell the user through a safe channel.' });
    const send = async (c) => {
      const password = pw.input.value;
      if (password.length < 12) { pw.setError('The new password must be at least 12 characters'); pw.input.focus(); return; }
      pw.input.value = '';
      try {
        await patch(`/users/${user.id}`, { password });
        c.close();
        say('ok', `The password of ${user.username} was reset.`);
      } catch (e) {
        pw.setError(isStatus(e, 400) ? fieldMessage('The password', e.message) : describe(e));
        pw.input.focus();
      }
    };
    const ctl = openDialog({
      title: `Reset the password of ${user.username}`,
      content: h('form', { novalidate: true, on: { submit: (e) => { e.preventDefault(); send(ctl); } } },
        // Tells password managers whose password this is.
        h('input', { type: 'text', autocomplete: 'username', value: user.username, hidden: true, readonly: true, tabindex: '-1', 'aria-hidden': 'true' }),
        pw.el),
      actions: [
        { label: 'Reset password', kind: 'primary', onClick: send },
        { label: 'Cancel', onClick: (c) => c.close() },
      ],
      onClose: () => { pw.input.value = ''; },
    });
  }

  function renderList() {
    heading.textContent = `Accounts (${users.length})`;
    const rows = users.map((u) => h('tr', null,
      h('td', null, u.username, u.id === ctx.me.id ? h('span.muted', null, ' (you)') : null),
      h('td', null, u.role),
      h('td', null, h('span', { class: `pill pill--${u.disabled ? 'bad' : 'ok'}` }, u.disabled ? 'disabled' : 'enabled')),
      h('td.nowrap', null, dateTime(u.created_at)),
      writable ? h('td', null, h('div.inline-actions', null,
        btn(['Change role', hidden(` of ${u.username}`)], () => roleDialog(u), 'secondary small'),
        btn([u.disabled ? 'Enable' : 'Disable', hidden(` ${u.username}`)], () => change(u, { disabled: !u.disabled }, `${u.username} is ${u.disabled ? 'enabled' : 'disabled'}.`), 'secondary small'),
        btn(['Reset password', hidden(` of ${u.username}`)], () => resetDialog(u), 'secondary small'))) : null));
    replace(listBox, table('User accounts', ['User name', 'Role', 'State', 'Created', writable && 'Actions'].filter(Boolean), rows, 'table--wide'));
  }

  const F = {
    username: field({ label: 'User name', name: 'username', hint: '1–64 of a–z, 0–9, “_”, “.”, “@”, “-”, starting with a letter or digit.' }),
    password: field({ label: 'Password', name: 'password', type: 'password', autocomplete: 'new-password', hint: '12 to 1,024 characters.' }),
    role: roleField('viewer'),
  };
  const { form } = formOf({
    fields: F,
    label: 'Create user',
    conflict: 'username',
    check: () => [
      !F.username.input.value.trim() && { key: 'username', message: 'Enter a user name' },
      F.password.input.value.length < 12 && { key: 'password', message: 'The password must be at least 12 characters' },
    ],
    send: async () => {
      const body = { username: F.username.input.value.trim(), password: F.password.input.value, role: F.role.input.value };
      F.password.input.value = '';
      const r = await post('/users', body);
      F.username.input.value = '';
      users = [...users, r.data].sort((a, b) => a.username.localeCompare(b.username));
      renderList();
      say('ok', `Created ${r.data.username} (${r.data.role}).`);
    },
  });

  replace(root,
    h('h1', null, 'Users'),
    message,
    section('users-list', heading, listBox),
    writable ? section('users-new', 'New user', form) : null);
  renderList();
}
