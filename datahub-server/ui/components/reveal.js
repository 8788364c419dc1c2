// Revealed credentials, shown once with Copy buttons; only the DOM holds them, and only for 30 s.

import { h, replace, clear } from '../dom.js';
import { post, describe } from '../api.js';
import { notice, facts, btn, copyButton } from './page-kit.js';

const SHOW_FOR_S = 30;

/** The Reveal control for connection `id`: {button, region, hide()}. */
export function revealer(id) {
  const region = h('div.reveal', { hidden: true, role: 'region', 'aria-labelledby': 'reveal-title' });
  let timer = 0;

  const button = btn('Reveal', reveal);

  function hide() {
    clearInterval(timer);
    const hadFocus = region.contains(document.activeElement);
    clear(region);
    region.hidden = true;
    button.disabled = false;
    if (hadFocus) button.focus();
  }

  async function reveal() {
    button.disabled = true;
    let data;
    try {
      ({ data } = await post(`/connections/${id}/reveal`));
    } catch (e) {
      button.disabled = false;
      region.hidden = false;
      replace(region, notice('error', describe(e)));
      return;
    }
    const note = h('p.copy-note', { role: 'status' });
    let left = SHOW_FOR_S;
    const countdown = h('span', null, left);
    const row = (label, value, copyLabel) => {
      const el = h('code.secret', null, value);
      return [label, [el, copyLabel && copyButton(copyLabel, el, note)]];
    };
    region.hidden = false;
    replace(region,
      h('h2', { id: 'reveal-title', tabindex: '-1' }, 'Credentials'),
      h('p.muted', null, 'Shown once. They are hidden again in ', countdown, ' s.'),
      facts([
        row('Username', data.username),
        row('Password', data.password, 'Copy password'),
        row('DSN', data.dsn, 'Copy DSN'),
        data.client_key_pem && row('Client key', data.client_key_pem, 'Copy client key')]),
      note,
      btn('Hide now', hide));
    data = null;
    region.querySelector('h2').focus();
    timer = setInterval(() => {
      countdown.textContent = --left;
      if (left <= 0) hide();
    }, 1000);
  }

  return { button, region, hide };
}
