// Pieces every page shares: buttons, notices, sections, tables, refusals and loading, the user list.

import { h, replace } from '../dom.js';
import { get, describe, isStatus } from '../api.js';

/** Text only screen readers read (e.g. whom a row's button acts on). */
export const hidden = (text) => h('span.visually-hidden', null, text);

/** A button; kind: 'secondary', 'primary', 'danger' or 'link', and maybe ' small'. */
export const btn = (label, onClick, kind = 'secondary') => h('button', {
  type: 'button', class: `button ${kind.split(' ').map((k) => `button--${k}`).join(' ')}`, on: { click: onClick },
}, label);

/** A button copying el's text; note says how it went (when refused, the text is selected). */
export const copyButton = (label, el, note, kind = 'secondary small') => btn(label, async () => {
  try {
    await navigator.clipboard.writeText(el.textContent);
    note.textContent = 'Copied.';
  } catch {
    getSelection().selectAllChildren(el);
    note.textContent = 'Copying is blocked here: the text is selected, press Ctrl+C (⌘C).';
  }
}, kind);

export const submit = (label, kind = 'primary') => h('button', { type: 'submit', class: `button button--${kind}` }, label);

/** A section named by its heading (an <h2> with this id, or the element given). */
export const section = (id, heading, ...children) => h('section.admin-section', { 'aria-labelledby': id },
  typeof heading === 'string' ? h('h2', { id }, heading) : heading, children);

/** A message box: kind info, ok, warning or error (an alert); strings become paragraphs. */
export function notice(kind, ...children) {
  return h('div', { class: `notice notice--${kind}`, role: kind === 'error' ? 'alert' : null },
    children.map((c) => (typeof c === 'string' ? h('p', null, c) : c)));
}

/** A page that can only say why it shows nothing: a heading, the reason, a way back. */
export function refuse(root, ctx, heading, text, kind = 'info', retry) {
  ctx.title(heading);
  replace(root, h('h1', null, heading), notice(kind, text),
    retry ? h('p', null, btn('Try again', retry, 'primary')) : null,
    h('p', null, h('a', { href: '/connections' }, 'Back to connections')));
}

/** What fetch() resolves to; on a failure but 401, says why on the page and answers undefined. */
export async function loadOr(root, ctx, heading, what, fetch) {
  try {
    const data = await fetch();
    return ctx.current ? data : undefined;
  } catch (e) {
    if (isStatus(e, 401)) throw e;
    refuse(root, ctx, heading, isStatus(e, 403) ? `Your account may not see ${what}.`
      : isStatus(e, 404) ? `${what[0].toUpperCase()}${what.slice(1)} could not be found, or you may not see it.` : describe(e));
    return;
  }
}

/** Users [{id, username}]: the admin list, else the directory, else null. */
export async function people(ctx) {
  try {
    return ctx.can('users') ? (await get('/users')).data : (await get('/directory', { q: '' })).data.users || [];
  } catch (e) {
    if (isStatus(e, 401)) throw e;
    return null;
  }
}

/** A table in its own box; head: texts or [text, class]. A table--wide box scrolls and takes focus. */
export function table(caption, head, rows, cls = '') {
  const wide = cls.includes('table--wide');
  return h('div.table-wrap', { tabindex: wide ? '0' : null, role: wide ? 'region' : null, 'aria-label': wide ? caption : null },
    h('table', { class: `table ${cls}` },
    h('caption.visually-hidden', null, caption),
    h('thead', null, h('tr', null, head.map((t) => (Array.isArray(t)
      ? h('th', { scope: 'col', class: t[1] }, t[0]) : h('th', { scope: 'col' }, t))))),
    h('tbody', null, rows)));
}

/** A table of label and value pairs (falsy pairs skipped). */
export const facts = (pairs, cls = '') => h('dl', { class: `facts ${cls}` },
  pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));

/** Reads a picked file as text (certificates and keys); refuses files over 64 KiB. */
export function readFileText(file) {
  return new Promise((resolve, reject) => {
    if (file.size > 65536) { reject(new Error('The file is larger than 64 KiB: pick a PEM file.')); return; }
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result || ''));
    reader.onerror = () => reject(new Error('The file could not be read.'));
    reader.readAsText(file);
  });
}
