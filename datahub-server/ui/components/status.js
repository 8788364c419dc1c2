// A connection's health status: a decorative dot plus the word (colour is never the only signal).

import { h } from '../dom.js';

const KNOWN = new Set(['healthy', 'degraded', 'down', 'unknown']);

export function statusBadge(status) {
  const badge = h('span', null, h('span.dot', { 'aria-hidden': 'true' }), h('span.status-word'));
  setStatus(badge, status);
  return badge;
}

/** Sets a badge's status; false when it had it already. */
export function setStatus(badge, status) {
  const word = KNOWN.has(status) ? status : 'unknown';
  if (badge.dataset.status === word) return false;
  badge.className = `status status--${word}`;
  badge.dataset.status = word;
  badge.lastChild.textContent = word;
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
