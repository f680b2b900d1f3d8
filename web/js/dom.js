// Building the page: every piece of data goes in as text (textContent / attribute
// values), never as markup. Nothing in this application uses innerHTML.

// h('tag.class1.class2', {attrs, on: {event: fn}}, ...children)
// Children: strings and numbers (as text), nodes, arrays, null/undefined/false (skipped).
export function h(spec, props, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (props && (typeof props !== 'object' || props instanceof Node || Array.isArray(props))) {
    children.unshift(props);
    props = null;
  }
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'class') {
      el.className = [el.className, v].filter(Boolean).join(' ');
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'text') {
      el.textContent = String(v);
    } else if (k in el && typeof v !== 'string') {
      el[k] = v;
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// A modal <dialog>; resolves true when the confirm button was used.
// body: nodes; options: {title, confirm, cancel, danger}
export function modal({ title, body, confirm, cancel, danger }) {
  return new Promise((resolve) => {
    const ok = h('button.btn' + (danger ? '.btn-danger' : '.btn-primary'),
      { type: 'submit', value: 'ok', 'data-test': 'dialog-confirm' }, confirm);
    const form = h('form', { method: 'dialog' },
      h('h2.dialog-title', title),
      h('div.dialog-body', body),
      h('div.dialog-actions',
        h('button.btn', { type: 'submit', value: 'cancel', formnovalidate: true, 'data-test': 'dialog-cancel' }, cancel),
        ok));
    // Enter in a field confirms (the form's first button, its default, is cancel).
    form.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && ev.target.tagName === 'INPUT' && ev.target.type !== 'checkbox' && ev.target.type !== 'radio') {
        ev.preventDefault();
        form.requestSubmit(ok);
      }
    });
    const dlg = h('dialog.dialog', form);
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(dlg.returnValue === 'ok');
    });
    document.body.append(dlg);
    dlg.showModal();
    // The body's field marked data-autofocus when it has one, else the confirm button.
    const field = dlg.querySelector('.dialog-body [data-autofocus]');
    (field || ok).focus();
  });
}

export function formatBytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
}
