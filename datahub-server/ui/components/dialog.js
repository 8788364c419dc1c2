// Modal dialogs (showModal): labelled by the title, Tab wraps, Escape closes, focus returns.

import { h, replace } from '../dom.js';
import { describe } from '../api.js';
import { notice } from './page-kit.js';

let counter = 0;
const open = new Set();

/** Closes every open dialog (the router calls it when the page changes). */
export const closeDialogs = () => open.forEach((d) => d.close());

/** Opens a dialog; answers {close(), root, buttons}. actions: [{label, kind, onClick(ctl), disabled}]. */
export function openDialog({ title, content, actions = [], onClose } = {}) {
  const opener = document.activeElement;
  const titleId = `dialog-title-${++counter}`;
  const buttons = actions.map((a) => h('button', {
    type: 'button', class: `button button--${a.kind || 'secondary'}`, disabled: a.disabled, on: { click: () => a.onClick(ctl) },
  }, a.label));
  const root = h('dialog.dialog', { 'aria-labelledby': titleId, 'aria-modal': 'true' },
    h('h2', { id: titleId }, title), h('div', null, content),
    buttons.length ? h('div.dialog-actions', null, buttons) : null);
  let closed = false;
  const ctl = {
    root,
    buttons,
    close() {
      if (closed) return;
      closed = true;
      open.delete(ctl);
      if (root.open) root.close();
      root.remove();
      if (opener && opener.isConnected) opener.focus();
      if (onClose) onClose();
    },
  };
  root.addEventListener('cancel', (e) => { e.preventDefault(); ctl.close(); });
  root.addEventListener('close', () => ctl.close());
  root.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab') return;
    const items = [...root.querySelectorAll(':is(a[href], button, input, select, textarea, [tabindex]):not([disabled], [tabindex="-1"])')]
      .filter((el) => el.offsetParent !== null);
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
  });
  document.body.append(root);
  open.add(ctl);
  root.showModal();
  const autofocus = root.querySelector('input, select, textarea') || buttons[0];
  if (autofocus) autofocus.focus();
  return ctl;
}

/** Asks to confirm; onConfirm() may throw an ApiError, shown in the dialog. */
export function confirm({ title, text, label, onConfirm }) {
  const msg = h('div');
  return openDialog({
    title,
    content: [h('p', null, text), msg],
    actions: [
      { label, kind: 'danger', onClick: async (c) => {
        try { await onConfirm(); c.close(); } catch (e) { replace(msg, notice('error', describe(e))); }
      } },
      { label: 'Cancel', onClick: (c) => c.close() },
    ],
  });
}
