// A connection's health status: a decorative dot plus the status word (colour is never the only
// signal).

import { h } from '../dom.js';

const KNOWN = new Set(['healthy', 'degraded', 'down', 'unknown']);

/** <span class="status status--down"><span class="dot" aria-hidden="true"></span>down</span>. */
export function statusBadge(status) {
  const word = KNOWN.has(status) ? status : 'unknown';
  return h('span', { class: `status status--${word}`, dataset: { status: word } },
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    h('span', { class: 'status-word' }, word));
}

/** Changes a badge made by statusBadge in place. */
export function setStatus(badge, status) {
  const word = KNOWN.has(status) ? status : 'unknown';
  if (badge.dataset.status === word) return false;
  badge.className = `status status--${word}`;
  badge.dataset.status = word;
  badge.querySelector('.status-word').textContent = word;
  return true;
}
