// A modal dialog: <dialog> opened with showModal() (the browser makes the rest inert and keeps
// focus inside), labelled by its title; Escape closes; focus returns to the opener.

import { h } from '../dom.js';

let counter = 0;

/** Opens a dialog; answers {close(), root}. actions: [{label, kind, onClick(ctl), disabled}]. */
export function openDialog({ title, content, actions = [], onClose } = {}) {
  const opener = document.activeElement;
  const titleId = `dialog-title-${++counter}`;
  const buttons = actions.map((a) => h('button', {
    type: 'button',
    class: `button button--${a.kind || 'secondary'}`,
    disabled: a.disabled,
    on: { click: () => a.onClick && a.onClick(ctl) },
  }, a.label));
  const root = h('dialog', { class: 'dialog', 'aria-labelledby': titleId, 'aria-modal': 'true' },
    h('h2', { class: 'dialog-title', id: titleId }, title),
    h('div', { class: 'dialog-body' }, content),
    buttons.length ? h('div', { class: 'dialog-actions' }, buttons) : null);
  let closed = false;
  const ctl = {
    root,
    buttons,
    close() {
      if (closed) return;
      closed = true;
      if (root.open) root.close();
      root.remove();
      if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
      if (onClose) onClose();
    },
  };
  root.addEventListener('cancel', (e) => { e.preventDefault(); ctl.close(); });
  root.addEventListener('close', () => ctl.close());
  // Tab wraps inside the dialog (showModal already keeps focus out of the page behind it).
  root.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab') return;
    const items = [...root.querySelectorAll('a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])')]
      .filter((el) => el.offsetParent !== null);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
  });
  document.body.append(root);
  root.showModal();
  const autofocus = root.querySelector('input, select, textarea') || buttons[0];
  if (autofocus) autofocus.focus();
  return ctl;
}
