// Target policy (/policy): networks and TLS floor; everyone reads it, admins PUT it.

import { h, replace } from '../dom.js';
import { get, put } from '../api.js';
import { selectField, textareaField, showApiError, formOf } from '../components/field.js';
import { notice, refuse, loadOr } from '../components/page-kit.js';

const MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
const LABELS = { allow_cidrs: 'Allowed networks', deny_cidrs: 'Denied networks', min_tls_mode: 'Minimum TLS mode' };

const lines = (text) => text.split('\n').map((l) => l.trim()).filter(Boolean);

export async function mount(root, ctx) {
  ctx.title('Policy');
  if (!ctx.can('policy.read')) return refuse(root, ctx, 'Policy', 'Your account may not read the target policy.');
  let policy = await loadOr(root, ctx, 'Policy', 'the policy', () => get('/policy').then((r) => r.data));
  if (!policy) return;
  const intro = h('p.lead', null,
    'Which addresses connections may reach and the weakest TLS mode they may use, for tests, checks and pools. Cloud metadata and similar ranges are always denied.');

  if (!ctx.can('policy.write')) {
    const list = (items) => (items.length ? h('ul', null, items.map((c) => h('li.mono', null, c))) : h('span.muted', null, 'none'));
    replace(root, h('h1', null, 'Policy'), intro,
      notice('info', 'Only admins change the policy.'),
      h('dl.policy-view', null,
        h('dt', null, LABELS.allow_cidrs), h('dd', null, policy.allow_cidrs.length ? list(policy.allow_cidrs) : 'any address not denied'),
        h('dt', null, LABELS.deny_cidrs), h('dd', null, list(policy.deny_cidrs)),
        h('dt', null, LABELS.min_tls_mode), h('dd', null, policy.min_tls_mode)));
    return;
  }
  const cidrs = (name, hint) => textareaField({ label: LABELS[name], name, rows: 6, value: policy[name].join('\n'), hint, attrs: { spellcheck: 'false' } });

  const F = {
    allow_cidrs: cidrs('allow_cidrs', 'One network per line, e.g. 127.0.0.0/8 or ::1/128, or a bare address. Empty: any address not denied.'),
    deny_cidrs: cidrs('deny_cidrs', 'One per line; checked after the allowed networks.'),
    min_tls_mode: selectField({
      label: LABELS.min_tls_mode, name: 'min_tls_mode', value: policy.min_tls_mode,
      hint: 'Weaker modes are refused. disable, allow and prefer may send passwords and data unencrypted.',
      options: MODES,
    }),
  };
  const message = h('div', { role: 'status' });
  let body;
  const { form } = formOf({
    fields: F,
    label: 'Save policy',
    send: async () => {
      body = { allow_cidrs: lines(F.allow_cidrs.input.value), deny_cidrs: lines(F.deny_cidrs.input.value), min_tls_mode: F.min_tls_mode.input.value };
      replace(message);
      policy = (await put('/policy', body)).data;
      F.allow_cidrs.input.value = policy.allow_cidrs.join('\n');
      F.deny_cidrs.input.value = policy.deny_cidrs.join('\n');
      F.min_tls_mode.input.value = policy.min_tls_mode;
      replace(message, notice('ok', 'Saved the policy. Every test, check and pool applies it from now on.'));
    },
    failed: (err, summary) => {
      const m = /^(\w+)\[(\d+)\]$/.exec(err.field);
      showApiError(summary, F, err, m ? m[1] : err.field, m && body[m[1]] ? `Line ${+m[2] + 1} (“${body[m[1]][+m[2]]}”): ` : '');
    },
  });
  replace(root, h('h1', null, 'Policy'), intro, message, form);
}
