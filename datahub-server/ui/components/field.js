// Form fields in the GOV.UK manner: a visible label, a hint under it, the field's own error
// next to it (all linked by aria-describedby), and an error summary at the top of a form.

import { h } from '../dom.js';

let counter = 0;
const uid = (name) => `f-${String(name || 'field').replace(/[^a-zA-Z0-9_-]/g, '-')}-${++counter}`;

function wrap({ label, name, hint, input }) {
  const id = input.id || uid(name);
  input.id = id;
  const hintEl = hint ? h('p', { class: 'field-hint', id: `${id}-hint` }, hint) : null;
  const errorEl = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  const el = h('div', { class: 'field' },
    h('label', { class: 'field-label', for: id }, label),
    hintEl, errorEl, input);
  const describe = (withError) => {
    const ids = [hintEl && hintEl.id, withError && errorEl.id].filter(Boolean);
    if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
    else input.removeAttribute('aria-describedby');
  };
  describe(false);
  const setError = (message) => {
    if (message) {
      errorEl.textContent = '';
      errorEl.append(h('span', { class: 'visually-hidden' }, 'Error: '), message);
      errorEl.hidden = false;
      el.classList.add('field--error');
      input.setAttribute('aria-invalid', 'true');
      describe(true);
    } else {
      errorEl.textContent = '';
      errorEl.hidden = true;
      el.classList.remove('field--error');
      input.removeAttribute('aria-invalid');
      describe(false);
    }
  };
  return { el, input, setError };
}

/** A text-like <input> with its label: {el, input, setError(msg|null)}. */
export function field({ label, name, type = 'text', value, hint, required, autocomplete, attrs } = {}) {
  const input = h('input', {
    class: 'input', type, name, value: value ?? '', required, autocomplete, ...(attrs || {}),
  });
  return wrap({ label, name, hint, input });
}

/** A <select> with its label; options: [{value, label}]. */
export function selectField({ label, name, options = [], value, hint, required, attrs } = {}) {
  const input = h('select', { class: 'input', name, required, ...(attrs || {}) },
    options.map((o) => h('option', { value: o.value, selected: String(o.value) === String(value ?? '') }, o.label)));
  if (value !== undefined && value !== null) input.value = String(value);
  return wrap({ label, name, hint, input });
}

/** A <textarea> with its label. */
export function textareaField({ label, name, value, hint, required, rows = 4, attrs } = {}) {
  const input = h('textarea', { class: 'input', name, rows, required, ...(attrs || {}) });
  input.value = value ?? '';
  return wrap({ label, name, hint, input });
}

/** The error summary: a role=alert box listing each error as a link that focuses its field. */
export function errorSummary(errors = [], title = 'There is a problem') {
  const titleId = uid('error-summary');
  const box = h('div', { class: 'error-summary', role: 'alert', 'aria-labelledby': titleId, tabindex: '-1' },
    h('h2', { class: 'error-summary-title', id: titleId }, title),
    h('ul', { class: 'error-summary-list' },
      errors.map((e) => h('li', null, e.input
        ? h('a', {
          href: `#${e.input.id}`,
          on: { click: (ev) => { ev.preventDefault(); e.input.focus(); } },
        }, e.message)
        : e.message))));
  return box;
}
