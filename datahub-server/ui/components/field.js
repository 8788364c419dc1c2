// Form fields in the GOV.UK manner: label, hint, own error (aria-describedby), error summary.

import { h, replace } from '../dom.js';
import { describe, isStatus } from '../api.js';

let counter = 0;
const uid = (name) => `f-${String(name || 'field').replace(/[^\w-]/g, '-')}-${++counter}`;

function wrap({ label, name, hint, input }) {
  const id = input.id || uid(name);
  input.id = id;
  const hintEl = hint ? h('p.field-hint', { id: `${id}-hint` }, hint) : null;
  const errorEl = h('p.field-error', { id: `${id}-error`, hidden: true });
  const el = h('div.field', null, h('label.field-label', { for: id }, label), hintEl, errorEl, input);
  const setError = (message) => {
    replace(errorEl, message ? [h('span.visually-hidden', null, 'Error: '), message] : null);
    errorEl.hidden = !message;
    el.classList.toggle('field--error', !!message);
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    const ids = [hintEl && hintEl.id, message && errorEl.id].filter(Boolean);
    if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
    else input.removeAttribute('aria-describedby');
  };
  setError(null);
  return { el, input, setError, label };
}

/** A labelled <input>, no autocomplete or spellcheck unless asked: {el, input, setError, label}. */
export function field({ label, name, type = 'text', value, hint, required, autocomplete = 'off', attrs } = {}) {
  const input = h('input.input', { type, name, value: value ?? '', required, autocomplete, spellcheck: 'false', ...attrs });
  return wrap({ label, name, hint, input });
}

/** options: values or [value, text] pairs. */
export function selectField({ label, name, options = [], value, hint, required, attrs } = {}) {
  const input = h('select.input', { name, required, ...attrs }, options.map((o) => {
    const [v, text] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v }, text);
  }));
  if (value != null) input.value = String(value);
  return wrap({ label, name, hint, input });
}

export function textareaField({ label, name, value, hint, required, rows = 4, attrs } = {}) {
  const input = h('textarea.input', { name, rows, required, ...attrs });
  input.value = value ?? '';
  return wrap({ label, name, hint, input });
}

export function checkbox({ label, name, checked, hint }) {
  const id = uid(name);
  const hintEl = hint ? h('p.field-hint', { id: `${id}-hint` }, hint) : null;
  const input = h('input.checkbox', { type: 'checkbox', id, name, checked, 'aria-describedby': hintEl && hintEl.id });
  return { input, label, el: h('div.check', null, input, h('label', { for: id }, label), hintEl), setError() {} };
}

/** The error summary: a role=alert box listing each error as a link that focuses its field. */
export function errorSummary(errors = [], title = 'There is a problem') {
  const titleId = uid('error-summary');
  return h('div.error-summary', { role: 'alert', 'aria-labelledby': titleId, tabindex: '-1' },
    h('h2', { id: titleId }, title),
    h('ul', null, errors.map((e) => h('li', null, e.input
      ? h('a', { href: `#${e.input.id}`, on: { click: (ev) => { ev.preventDefault(); e.input.focus(); } } }, e.message)
      : e.message))));
}

/** Shows errors [{key, message}] next to their fields and in a focused summary in box. */
export function showErrors(box, fields, errors) {
  for (const f of Object.values(fields)) f.setError(null);
  const items = errors.map((e) => {
    const f = fields[e.key];
    if (f) f.setError(e.message);
    return { message: e.message, input: f ? f.input : e.input };
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

/** Shows an API error: a 400/409 about field `key` (default: the one it names) also next to it. */
export function showApiError(box, fields, e, key = e.field, prefix = '') {
  const f = isStatus(e, 400, 409) && fields[key];
  showErrors(box, fields, [{ key: f ? key : null, message: f ? prefix + fieldMessage(f.label, e.message) : describe(e) }]);
}

/** An admin form: check() errors show, else send() runs; its error goes to failed() or its field. */
export function formOf({ fields, label, check = () => [], send, conflict, extra, failed }) {
  const summary = h('div');
  const button = h('button.button.button--primary', { type: 'submit' }, label);
  const form = h('form.admin-form', { novalidate: true, on: { submit: async (e) => {
    e.preventDefault();
    const errs = check().filter(Boolean);
    showErrors(summary, fields, errs);
    if (errs.length) return;
    button.disabled = true;
    try {
      await send();
    } catch (err) {
      if (failed) failed(err, summary);
      else showApiError(summary, fields, err, err.field || (isStatus(err, 409) ? conflict : null));
    } finally {
      button.disabled = false;
    }
  } } }, summary, Object.values(fields).map((f) => f.el), extra, button);
  return { form, button };
}
