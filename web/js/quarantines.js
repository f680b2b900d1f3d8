// The Quarantines page (admins and operators): every quarantine the API lists for
// the user (GET /api/v1/quarantines scopes operators to theirs), with its messages,
// size and oldest message; each name opens the list filtered by it. Admins also
// keep the PVO quarantines' settings here: create and delete policy quarantines
// (POST, DELETE /api/v1/quarantines[/{name}]) and edit any PVO one's (PATCH).

import { api, query } from './api.js';
import { h, clear, modal, formatBytes } from './dom.js';
import { t, formatDate, formatNumber, formatRelative } from './i18n.js';
import { isAdmin, navigate, notify } from './session.js';
import { isPvoType, failureText, typeLabel } from './pvo.js';

function listPath(name) {
  return '/messages' + query({ quarantine: name });
}

export function renderQuarantines(main) {
  const admin = isAdmin();
  const tbody = h('tbody');
  const cols = [t('q.name'), t('q.type'), t('q.messages'), t('q.bytes'), t('q.oldest')];
  if (admin) cols.push(t('q.delete_after'), t('q.default_action'), t('q.overflow_exempt'), t('q.operators'), h('span.sr-only', t('q.settings')));
  const table = h('table.plain-table.q-table', { 'data-test': 'quarantines' },
    h('thead', h('tr', cols.map((c, i) => h(i >= 2 && i <= 3 ? 'th.num' : 'th', c)))),
    tbody);
  main.append(h('h1.page-title', t('q.title')), h('p.muted', t('q.intro')), h('div.table-wrap', table));

  let quarantines = [];
  let operators = [];
  let editing = null; // the quarantine whose settings the form shows, null: a new one

  // ---- the settings form (admins) ----
  const formTitle = h('h2.section-title', { 'data-test': 'q-form-title' });
  const name = h('input.input', { id: 'q-name', name: 'name', required: true, maxlength: 64, autocomplete: 'off', 'data-test': 'q-name' });
  const deleteAfter = h('input.input', { id: 'q-delete-after', name: 'delete_after', autocomplete: 'off', placeholder: '14d', 'data-test': 'q-delete-after' });
  const defaultAction = h('select.input', { id: 'q-default-action', name: 'default_action', 'data-test': 'q-default-action' },
    ['delete', 'release'].map((a) => h('option', { value: a }, t('q.action.' + a))));
  const exempt = h('input', { type: 'checkbox', id: 'q-exempt', name: 'overflow_exempt', 'data-test': 'q-exempt' });
  const opsBox = h('div.op-list', { 'data-test': 'q-operators' });
  const formError = h('p.form-error', { role: 'alert', 'data-test': 'q-form-error', hidden: true });
  const submit = h('button.btn.btn-primary', { type: 'submit', 'data-test': 'q-submit' });
  const cancelEdit = h('button.btn', { type: 'button', 'data-test': 'q-cancel', on: { click: () => edit(null) } }, t('action.cancel'));
  const form = h('form.card-form', { 'data-test': 'q-form', on: { submit: (ev) => { ev.preventDefault(); save(); } } },
    formTitle,
    h('div.form-grid',
      h('label.field', { for: 'q-name' }, h('span.field-label', t('q.name')), name),
      h('label.field', { for: 'q-delete-after' }, h('span.field-label', t('q.delete_after')), deleteAfter,
        h('span.field-hint', t('q.delete_after_hint'))),
      h('label.field', { for: 'q-default-action' }, h('span.field-label', t('q.default_action')), defaultAction,
        h('span.field-hint', t('q.default_action_hint'))),
      h('div.field', h('span.field-label', t('q.overflow_exempt')),
        h('label.check', { for: 'q-exempt' }, exempt, ' ', t('q.overflow_exempt_label')))),
    h('fieldset.field.op-field', h('legend.field-label', t('q.operators')), opsBox),
    formError,
    h('div.form-actions', cancelEdit, submit));
  if (admin) main.append(form);

  function operatorChoices(selected) {
    clear(opsBox);
    const chosen = new Set(selected || []);
    // An assigned account that is no longer an operator stays visible (and checked).
    const names = [...new Set([...operators, ...chosen])].sort();
    if (!names.length) {
      opsBox.append(h('p.muted', t('q.operators_none')));
      return;
    }
    names.forEach((u, i) => opsBox.append(h('label.check', { for: 'q-op-' + i },
      h('input', { type: 'checkbox', id: 'q-op-' + i, value: u, checked: chosen.has(u), 'data-operator': u }), ' ', u)));
  }

  function edit(q) {
    editing = q;
    formError.hidden = true;
    formTitle.textContent = q ? t('q.edit_title', { name: q.name }) : t('q.new');
    name.value = q ? q.name : '';
    name.readOnly = Boolean(q);
    deleteAfter.value = q && q.delete_after !== undefined ? q.delete_after : '';
    defaultAction.value = q && q.default_action ? q.default_action : 'delete';
    exempt.checked = Boolean(q && q.overflow_exempt);
    operatorChoices(q ? q.operators : []);
    submit.textContent = q ? t('action.save') : t('q.create');
    cancelEdit.hidden = !q;
    if (q) {
      form.scrollIntoView({ block: 'nearest' });
      deleteAfter.focus();
    }
  }

  async function save() {
    formError.hidden = true;
    const body = {
      default_action: defaultAction.value,
      overflow_exempt: exempt.checked,
      operators: [...opsBox.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value),
    };
    const q = editing;
    // An unchanged duration is not sent: a quarantine on the default keeps it.
    const after = deleteAfter.value.trim();
    if (after && !(q && after === q.delete_after)) body.delete_after = after;
    try {
      if (q) {
        await api('PATCH', '/api/v1/quarantines/' + encodeURIComponent(q.name), body);
        notify(t('q.saved', { name: q.name }));
      } else {
        body.name = name.value.trim();
        body.type = 'policy';
        await api('POST', '/api/v1/quarantines', body);
        notify(t('q.created', { name: body.name }));
      }
      edit(null);
      load();
    } catch (e) {
      formError.textContent = t(q ? 'q.save_failed' : 'q.create_failed', { message: failureText(e) });
      formError.hidden = false;
      notify(formError.textContent, 'error');
    }
  }

  async function remove(q) {
    const ok = await modal({
      title: t('q.delete_title'),
      body: [h('p', t('q.delete_confirm', { name: q.name }))],
      confirm: t('action.delete'), cancel: t('action.cancel'), danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', '/api/v1/quarantines/' + encodeURIComponent(q.name));
      notify(t('q.deleted', { name: q.name }));
      if (editing && editing.name === q.name) edit(null);
      load();
    } catch (e) {
      notify(t('q.delete_failed', { name: q.name, message: failureText(e) }), 'error');
    }
  }

  function row(q) {
    const pvo = isPvoType(q.type);
    const cells = [
      h('td.q-name', h('a', {
        href: listPath(q.name), 'data-test': 'q-link',
        on: { click: (ev) => { if (!ev.ctrlKey && !ev.metaKey && ev.button === 0) { ev.preventDefault(); navigate(listPath(q.name)); } } },
      }, q.name)),
      h('td', typeLabel(q.type), q.system ? h('span.badge.badge-system', t('q.system')) : null),
      h('td.num', { 'data-test': 'q-messages', 'data-value': q.messages }, q.messages === undefined ? '—' : formatNumber(q.messages)),
      h('td.num', { 'data-test': 'q-bytes', 'data-value': q.bytes, title: q.bytes === undefined ? null : formatNumber(q.bytes) + ' B' }, q.bytes === undefined ? '—' : formatBytes(q.bytes)),
      h('td.col-date', { 'data-test': 'q-oldest' }, q.oldest
        ? [h('div', formatRelative(q.oldest)), h('div.cell-sub', h('time', { datetime: q.oldest }, formatDate(q.oldest)))]
        : '—'),
    ];
    if (admin) {
      if (pvo) {
        cells.push(
          h('td', q.delete_after === '0' ? t('q.default_days') : q.delete_after || '—'),
          h('td', q.default_action ? t('q.action.' + q.default_action) : '—'),
          h('td', q.overflow_exempt ? t('q.yes') : t('q.no')),
          h('td.q-ops', (q.operators || []).length ? q.operators.map((o) => h('div', o)) : '—'),
          h('td.num.q-actions',
            h('button.btn.btn-small', { type: 'button', 'data-test': 'q-edit', 'aria-label': t('q.edit_named', { name: q.name }), on: { click: () => edit(q) } }, t('q.edit')),
            q.type === 'policy' ? h('button.btn.btn-small.btn-danger-outline', {
              type: 'button', 'data-test': 'q-delete', 'aria-label': t('q.delete_named', { name: q.name }), on: { click: () => remove(q) },
            }, t('action.delete')) : null));
      } else {
        cells.push(h('td.muted', { colspan: 5 }, t('q.spam_settings')));
      }
    }
    return h('tr', { 'data-quarantine': q.name, 'data-type': q.type }, cells);
  }

  async function load() {
    try {
      const doc = await api('GET', '/api/v1/quarantines');
      quarantines = (doc && doc.quarantines) || [];
      clear(tbody);
      if (!quarantines.length) tbody.append(h('tr', h('td.empty', { colspan: admin ? 10 : 5 }, t('q.none'))));
      for (const q of quarantines) tbody.append(row(q));
    } catch (e) {
      clear(tbody).append(h('tr', h('td.empty.error', { colspan: admin ? 10 : 5 }, failureText(e))));
    }
  }

  if (admin) {
    edit(null);
    api('GET', '/api/v1/users').then((doc) => {
      operators = ((doc && doc.users) || []).filter((u) => u.role === 'operator').map((u) => u.username);
      operatorChoices(editing ? editing.operators : [...opsBox.querySelectorAll('input:checked')].map((c) => c.value));
    }).catch(() => {});
  }
  load();
}
