// Small DOM helpers: elements are built with createElement (never innerHTML), so API data can't
// inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs, svg) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (!svg && (key === 'value' || key === 'checked' || key === 'selected')) {
      el[key] = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

/** Appends children: strings become text nodes, arrays are flattened, null/false skipped. */
export function append(el, kids) {
  for (const kid of kids) {
    if (kid === null || kid === undefined || kid === false) continue;
    if (Array.isArray(kid)) append(el, kid);
    else if (kid instanceof Node) el.appendChild(kid);
    else el.appendChild(document.createTextNode(String(kid)));
  }
  return el;
}

/** Creates an HTML element with attributes and children. */
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  apply(el, attrs, false);
  return append(el, kids);
}

/** Creates an SVG element with attributes and children. */
export function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs, true);
  return append(el, kids);
}

/** Replaces every child of `el`. */
export function replace(el, ...kids) {
  el.replaceChildren();
  return append(el, kids);
}

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/** Keeps Tab and Shift+Tab cycling inside `dlg` (a modal <dialog> otherwise lets focus leave
 * for the browser's own UI). */
export function trapFocus(dlg) {
  dlg.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Tab') return;
    const items = [...dlg.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null);
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (ev.shiftKey && document.activeElement === first) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && document.activeElement === last) {
      ev.preventDefault();
      first.focus();
    }
  });
}

/** Opens a modal dialog (native <dialog>: focus stays inside, Esc closes); resolves on close
 * with the returnValue of the button used. */
export function dialog(title, body, buttons) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'dialog-title' }, title),
      body,
      h('div', { class: 'actions' }, buttons.map((b) =>
        h('button', { value: b.value, class: b.class || '', type: 'submit' }, b.label))));
    const dlg = h('dialog', { 'aria-labelledby': 'dialog-title' }, form);
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(dlg.returnValue || 'cancel');
    });
    trapFocus(dlg);
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}

/** Asks a yes/no question in a modal dialog; resolves true when confirmed. */
export async function confirmDialog(title, message, confirmLabel) {
  const answer = await dialog(title, h('p', {}, message), [
    { value: 'cancel', label: 'Cancel' },
    { value: 'confirm', label: confirmLabel, class: 'danger' },
  ]);
  return answer === 'confirm';
}
