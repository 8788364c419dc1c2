// Small pieces the form and admin pages share: notices, a refusal page, a checkbox, a confirm
// dialog, field errors from the API with the GOV.UK error summary, a scrolling table wrapper.

import { h, replace } from '../dom.js';
import { ApiError, describe } from '../api.js';
import { errorSummary } from './field.js';
import { openDialog } from './dialog.js';

let counter = 0;

/** A text only screen readers read (e.g. the user a row's button acts on). */
export const hidden = (text) => h('span', { class: 'visually-hidden' }, text);

/** A button that does what its label says: kind secondary (default), primary or danger. */
export const btn = (label, onClick, kind = 'secondary', ...more) => h('button', {
  type: 'button', class: `button button--${kind}${more.length ? ' button--small' : ''}`, on: { click: onClick },
}, label, more);

/** A message box: kind is info, ok, warning or error. */
export function notice(kind, ...children) {
  return h('div', { class: `notice notice--${kind}`, role: kind === 'error' ? 'alert' : null },
    children.map((c) => (typeof c === 'string' ? h('p', null, c) : c)));
}

/** A page the caller may not use: a heading and why, never a broken page. */
export function refuse(root, ctx, heading, message) {
  ctx.title(heading);
  replace(root, h('h1', null, heading), notice('info', message),
    h('p', null, h('a', { href: '/connections' }, 'Back to connections')));
}

/** The message for an error of a load, with 403 and 404 in words. */
export function loadError(err, what) {
  if (err instanceof ApiError && err.status === 403) return `Your account may not see ${what}.`;
  if (err instanceof ApiError && err.status === 404) return `${what[0].toUpperCase()}${what.slice(1)} could not be found, or you may not see it.`;
  return describe(err);
}

/** A checkbox with its label after it: {el, input}. */
export function checkbox({ label, name, checked, hint }) {
  const id = `ck-${name}-${++counter}`;
  const input = h('input', { type: 'checkbox', class: 'checkbox', id, name, checked });
  const hintEl = hint ? h('p', { class: 'field-hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return { input, el: h('div', { class: 'check' }, input, h('label', { for: id }, label), hintEl) };
}

/** A table in its own horizontally scrolling box (the page itself never scrolls sideways). */
export function tableWrap(caption, head, rows) {
  return h('div', { class: 'table-wrap kit-wrap' },
    h('table', { class: 'table' },
      caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
      h('thead', null, h('tr', null, head.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, rows)));
}

/** Asks to confirm; onConfirm(ctl) may throw an ApiError, shown in the dialog. */
export function confirm({ title, text, label, kind = 'danger', onConfirm }) {
  const msg = h('div', { role: 'alert' });
  const ctl = openDialog({
    title,
    content: h('div', null, h('p', null, text), msg),
    actions: [
      { label, kind, onClick: async (c) => {
        try { await onConfirm(c); c.close(); } catch (e) { replace(msg, notice('error', describe(e))); }
      } },
      { label: 'Cancel', kind: 'secondary', onClick: (c) => c.close() },
    ],
  });
  return ctl;
}

/**
 * Shows errors next to their fields and in a summary at the top. errors: [{key, message}];
 * fields: key → {input, setError, label}. Errors of unknown keys go to the summary only.
 * The summary replaces box's content and takes focus.
 */
export function showErrors(box, fields, errors) {
  for (const f of Object.values(fields)) f.setError && f.setError(null);
  const items = errors.map((e) => {
    const f = fields[e.key];
    if (f && f.setError) f.setError(e.message);
    return { field: e.key, message: e.message, input: f && f.input };
  });
  if (!items.length) { replace(box); return; }
  const summary = errorSummary(items);
  replace(box, summary);
  summary.focus();
}

/** The sentence for an API field error: the label, then the API's message ("must be …"). */
export function fieldMessage(label, message) {
  const m = String(message || 'is not valid');
  return /^[A-Z]/.test(m) ? m : `${label} ${m}`;
}

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
