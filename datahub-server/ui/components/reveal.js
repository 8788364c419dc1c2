// Revealed credentials, shown once: user name, password and DSN with Copy buttons, removed from
// the DOM after 30 seconds, on "Hide", and when the page goes away. Nothing is kept in a
// variable longer than the nodes that show it.

import { h, replace, clear } from '../dom.js';
import { post, describe } from '../api.js';

const SHOW_FOR_S = 30;

/** The Reveal control for connection `id`: {button, region, hide()}. */
export function revealer(id) {
  const region = h('div', { class: 'reveal', hidden: true });
  let timer = 0;
  let left = 0;

  const button = h('button', { type: 'button', class: 'button button--secondary', on: { click: reveal } }, 'Reveal');

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
      replace(region, h('div', { class: 'notice notice--error', role: 'alert' }, h('p', null, describe(e))));
      return;
    }
    const note = h('p', { class: 'copy-note', role: 'status' });
    const countdown = h('span', null, String(SHOW_FOR_S));
    const row = (label, value, copyLabel) => [
      h('dt', null, label),
      h('dd', null, h('code', { class: 'secret' }, value),
        copyLabel ? h('button', { type: 'button', class: 'button button--secondary button--small', on: { click: () => copy(value, note) } }, copyLabel) : null),
    ];
    region.hidden = false;
    replace(region,
      h('h2', { id: 'reveal-title', class: 'reveal-title' }, 'Credentials'),
      h('p', { class: 'muted' }, 'Shown once. They are hidden again in ', countdown, ' s.'),
      h('dl', { class: 'facts reveal-list' },
        row('Username', data.username, null),
        row('Password', data.password, 'Copy password'),
        row('DSN', data.dsn, 'Copy DSN'),
        data.client_key_pem ? row('Client key', data.client_key_pem, 'Copy client key') : null),
      note,
      h('button', { type: 'button', class: 'button button--secondary', on: { click: hide } }, 'Hide now'));
    data = null;
    region.setAttribute('aria-labelledby', 'reveal-title');
    region.setAttribute('role', 'region');
    region.querySelector('h2').setAttribute('tabindex', '-1');
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
