// A connection's health status: a decorative dot plus the word (colour is never the only signal).

import { h } from '../dom.js';

const KNOWN = new Set(['healthy', 'degraded', 'down', 'unknown']);

/** A badge: the dot, then the word. */
export function statusBadge(status) {
  const word = KNOWN.has(status) ? status : 'unknown';
  return h('span', { class: `status status--${word}`, dataset: { status: word } },
    h('span.dot', { 'aria-hidden': 'true' }),
    h('span.status-word', null, word));
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

/** The update a status_changed or checked event carries, merged into `into`. */
export const liveUpdate = (event, into = {}) => Object.assign(into, { status: event.type === 'checked' ? event.status : event.to, at: event.at || into.at },
  event.type === 'checked' && { latency_ms: event.latency_ms, error_kind: event.error_kind });

/** Applies a live update to a connection's health; false (nothing changed) when it is older. */
export function applyLive(health, u) {
  if (u.at && health.checked_at && Date.parse(u.at) < Date.parse(health.checked_at)) return false;
  if (u.at) health.checked_at = u.at;
  if (u.status) health.status = u.status;
  if ('latency_ms' in u) {
    health.error_kind = u.error_kind || null;
    if (u.latency_ms != null && !u.error_kind) health.latency_ms = u.latency_ms;
  }
  return true;
}
