// Sign in: says why it failed and when to retry, then goes to `next` (same-origin) or the list.

import { h, replace } from '../dom.js';
import { post, describe, isStatus } from '../api.js';
import { field, showErrors } from '../components/field.js';
import { safeNext } from '../app.js';
import { submit } from '../components/page-kit.js';

export async function mount(root, ctx) {
  const next = safeNext(ctx.query.get('next') || '/connections');
  if (ctx.me) {
    ctx.navigate(next, { replace: true });
    return;
  }
  ctx.title('Sign in');
  const username = field({ label: 'Username', name: 'username', autocomplete: 'username', required: true, attrs: { autocapitalize: 'none' } });
  const password = field({ label: 'Password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const problems = h('div');
  const button = submit('Sign in');
  let timer = null;

  const show = (errors) => showErrors(problems, { username, password }, errors);

  const lockFor = (left) => {
    const tick = () => {
      button.disabled = left > 0;
      button.textContent = left > 0 ? `Sign in (wait ${left} s)` : 'Sign in';
      if (left-- <= 0) clearInterval(timer);
    };
    tick();
    timer = setInterval(tick, 1000);
  };

  const signIn = async (event) => {
    event.preventDefault();
    const errors = [];
    if (!username.input.value.trim()) errors.push({ key: 'username', message: 'Enter your user name' });
    if (!password.input.value) errors.push({ key: 'password', message: 'Enter your password' });
    if (errors.length) { show(errors); return; }
    button.disabled = true;
    const body = { username: username.input.value.trim(), password: password.input.value };
    password.input.value = '';
    try {
      const { data } = await post('/auth/login', body);
      ctx.signedIn(data.user);
      ctx.navigate(next, { replace: true });
      return;
    } catch (e) {
      if (isStatus(e, 401)) {
        show([{ key: 'password', message: 'The user name or password is wrong (or the account is disabled). Try again.' }]);
      } else if (isStatus(e, 429)) {
        const wait = e.retryAfter ?? 60;
        show([{ input: username.input, message: `Too many sign-in attempts. Try again in ${wait} s${wait >= 60 ? ` (at ${new Date(Date.now() + wait * 1000).toLocaleTimeString()})` : ''}.` }]);
        lockFor(wait);
        return;
      } else {
        show([{ input: username.input, message: describe(e) }]);
      }
      button.disabled = false;
      password.input.focus();
    } finally {
      body.password = '';
    }
  };

  const form = h('form', { novalidate: true, on: { submit: signIn } },
    username.el, password.el, h('div.actions', null, button));
  replace(root, h('div.narrow', null,
    h('h1', null, 'Sign in to DataHub'),
    problems,
    form));
  username.input.focus();
  return () => { clearInterval(timer); password.input.value = ''; };
}
