// Revealed credentials, shown once with Copy buttons; only the DOM holds them, and only for 30 s.

import { h, replace, clear } from '../dom.js';
import { post, describe } from '../api.js';
import { notice, facts, btn } from './page-kit.js';

const SHOW_FOR_S = 30;

/** The Reveal control for connection `id`: {button, region, hide()}. */
export function revealer(id) {
  const region = h('div.reveal', { hidden: true });
  let timer = 0;
  let left = 0;

  const button = btn('Reveal', reveal);

  function hide() {
    clearInterval(timer);
    timer = 0;
    const hadFocus = region.contains(document.activeElement);
    clear(region);
    region.hidden = true;
    button.disabled = false;
    if (hadFocus) button.focus();
  }

  async function copy(text, note) {
    try {
      await navigator.clipboard.writeText(text);
      note.textContent = 'Copied.';
    } catch {
      note.textContent = 'Copying is blocked here: select the text and copy it yourself.';
    }
    setTimeout(() => { if (note.isConnected) note.textContent = ''; }, 3000);
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
    const countdown = h('span', null, String(SHOW_FOR_S));
    const row = (label, value, copyLabel) => [label, [h('code.secret', null, value), copyLabel && btn(copyLabel, () => copy(value, note), 'secondary small')]];
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
    region.setAttribute('aria-labelledby', 'reveal-title');
    region.setAttribute('role', 'region');
    region.querySelector('h2').focus();
    left = SHOW_FOR_S;
    timer = setInterval(() => {
      left -= 1;
      countdown.textContent = String(left);
      if (left <= 0) hide();
    }, 1000);
  }

  return { button, region, hide };
}
