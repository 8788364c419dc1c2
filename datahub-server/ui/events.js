// One shared EventSource to /api/v1/events; after a drop, jittered backoff (1 s → 30 s), then a resync.

import { get, isStatus } from './api.js';

const listeners = new Set();
let source = null;
let timer = null;
let delay = 1000;
let dropped = false;
let wanted = false;

function deliver(event) {
  for (const fn of [...listeners]) {
    // A listener's bug must not stop the others; it is rethrown later, without data.
    try { fn(event); } catch (e) { setTimeout(() => { throw e; }); }
  }
}

function connect() {
  timer = null;
  if (!wanted || source) return;
  const es = new EventSource('/api/v1/events', { withCredentials: true });
  source = es;
  es.onopen = () => {
    delay = 1000;
    if (dropped) {
      dropped = false;
      deliver({ type: 'resync' });
    }
  };
  es.onmessage = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    if (event && typeof event.type === 'string') deliver(event);
  };
  es.onerror = () => {
    if (source !== es) return;
    es.close();
    source = null;
    dropped = true;
    schedule();
  };
}

async function schedule() {
  if (!wanted || timer) return;
  // A refusal for an ended session looks like any drop: the API's 401 handler tells.
  try {
    await get('/auth/me');
  } catch (e) {
    if (isStatus(e, 401)) { close(); return; }
  }
  if (!wanted || timer || source) return;
  const wait = delay / 2 + Math.random() * (delay / 2);
  delay = Math.min(delay * 2, 30000);
  timer = setTimeout(connect, wait);
}

function stop() {
  clearTimeout(timer);
  timer = null;
  if (source) source.close();
  source = null;
}

// A page left closes its stream (an open one holds one of the six HTTP/1.1 connections per
// host and stalls the next page); back on the page, it reopens and resyncs.
addEventListener('pagehide', () => {
  if (wanted) dropped = true;
  stop();
});
addEventListener('pageshow', () => { if (wanted) connect(); });

export function open() {
  wanted = true;
  if (!source && !timer) connect();
}

/** Calls fn with every event (parsed JSON); answers the unsubscribe function. */
export function subscribe(fn) {
  listeners.add(fn);
  open();
  return () => listeners.delete(fn);
}

/** Closes the stream (sign-out) and forgets every listener. */
export function close() {
  wanted = false;
  dropped = false;
  delay = 1000;
  stop();
  listeners.clear();
}
