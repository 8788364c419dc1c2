// API tokens (/tokens): a new token is shown once and leaves the DOM when dismissed; revoke asks first.

import { h, replace, clear } from '../dom.js';
import { get, post, del } from '../api.js';
import { field, checkbox, formOf } from '../components/field.js';
import { confirm } from '../components/dialog.js';
import { age, dateTime } from '../format.js';
import { notice, refuse, loadOr, table, hidden, btn, section, copyButton } from '../components/page-kit.js';

export async function mount(root, ctx) {
  ctx.title('API tokens');
  if (!ctx.can('tokens')) return refuse(root, ctx, 'API tokens', 'Your account may not use API tokens.');
  let tokens = await loadOr(root, ctx, 'API tokens', 'your tokens', () => get('/tokens').then((r) => r.data));
  if (!tokens) return;
  const message = h('div', { 'aria-live': 'polite' });
  const shown = h('div');
  const listBox = h('div');
  const heading = h('h2', { id: 'tokens-list' });
  const state = (t) => (t.revoked_at ? 'revoked' : t.expires_at && Date.parse(t.expires_at) <= Date.now() ? 'expired' : 'active');

  function renderList() {
    heading.textContent = `Your tokens (${tokens.filter((t) => !t.revoked_at).length} active)`;
    if (!tokens.length) {
      replace(listBox, h('p.empty', null, 'No tokens yet.'));
      return;
    }
    const rows = [...tokens].sort((a, b) => b.created_at.localeCompare(a.created_at)).map((t) => h('tr', null,
      h('td', null, t.name),
      h('td.nowrap', null, dateTime(t.created_at)),
      h('td.nowrap', null, t.expires_at ? dateTime(t.expires_at) : 'never'),
      h('td.nowrap', null, age(t.last_used_at)),
      h('td', null, t.read_only ? 'read-only' : 'read and write'),
      h('td', null, h('span', { class: `pill pill--${state(t) === 'active' ? 'ok' : 'bad'}` }, state(t))),
      h('td', null, t.revoked_at ? h('span.muted', null, dateTime(t.revoked_at)) : btn(['Revoke', hidden(` token ${t.name}`)], () => revoke(t), 'danger small'))));
    replace(listBox, table('Your API tokens', ['Name', 'Created', 'Expires', 'Last used', 'Access', 'State', 'Revoke'], rows, 'table--wide'));
  }

  function revoke(t) {
    confirm({
      title: `Revoke token ${t.name}?`,
      text: 'Programs using it are refused from their next request. This cannot be undone.',
      label: 'Revoke token',
      onConfirm: async () => {
        await del(`/tokens/${t.id}`);
        tokens = tokens.map((x) => (x.id === t.id ? { ...x, revoked_at: new Date().toISOString() } : x));
        renderList();
        replace(message, notice('ok', `Revoked token ${t.name}.`));
        ctx.announce(`Revoked token ${t.name}.`);
      },
    });
  }

  function dismiss() {
    clear(shown);
    createButton.focus();
  }

  function showToken(created) {
    const text = h('code.token-text', { id: 'new-token' }, created.token);
    const status = h('span.muted', { role: 'status' });
    const copy = copyButton('Copy', text, status, 'primary');
    const box = h('section.token-box', { 'aria-labelledby': 'token-title' },
      h('h2', { id: 'token-title', tabindex: '-1' }, `Your new token “${created.name}”`),
      h('p', null, h('strong', null, 'Copy it now: it won’t be shown again.'), ' Send it as ', h('code', null, 'Authorization: Bearer <token>'), '.'),
      text,
      h('div.actions', null, copy,
        btn('Done, hide the token', dismiss), status));
    replace(shown, box);
    box.querySelector('h2').focus();
  }

  const F = {
    name: field({ label: 'Token name', name: 'name', hint: 'What uses it, e.g. “ci-deploy”. 1 to 64 characters.' }),
    expires_in_days: field({ label: 'Expires in (days)', name: 'expires_in_days', attrs: { inputmode: 'numeric' }, value: '90', hint: '1 to 3,650. Leave blank for a token that never expires.' }),
  };
  const readOnly = checkbox({ label: 'Read-only', name: 'read_only', hint: 'It may read but not create, change or delete anything.' });
  const days = () => F.expires_in_days.input.value.trim();
  const { form, button: createButton } = formOf({
    fields: F,
    label: 'Create token',
    extra: readOnly.el,
    check: () => [
      !F.name.input.value.trim() && { key: 'name', message: 'Enter a token name' },
      days() && !(/^\d+$/.test(days()) && +days() >= 1 && +days() <= 3650)
        && { key: 'expires_in_days', message: 'Expires in must be a whole number of days from 1 to 3,650' },
    ],
    send: async () => {
      const r = await post('/tokens', { name: F.name.input.value.trim(), expires_in_days: days() ? +days() : null, read_only: readOnly.input.checked });
      const { token, ...info } = r.data;
      tokens.push({ ...info, revoked_at: null });
      renderList();
      F.name.input.value = '';
      showToken({ ...info, token });
      ctx.announce(`Created token ${info.name}. Copy it now: it won’t be shown again.`);
    },
  });

  replace(root,
    h('h1', null, 'API tokens'),
    h('p.lead', null, 'A token acts as you in scripts and other programs, with your role and grants.'),
    message,
    shown,
    section('tokens-new', 'New token', form),
    section('tokens-list', heading, listBox));
  renderList();
  // Leaving the page takes the token out of the DOM.
  return () => clear(shown);
}
