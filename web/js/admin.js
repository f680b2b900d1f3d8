// Administrators' pages: user accounts (GET/POST /api/v1/users,
// DELETE /api/v1/users/{username}) and the audit log (GET /api/v1/audit).

import { api, query } from './api.js';
import { h, clear, modal } from './dom.js';
import { t, formatDate } from './i18n.js';
import { notify, notifyError } from './session.js';

const ROLES = ['enduser', 'operator', 'admin'];

export function renderUsers(main) {
  const tbody = h('tbody');
  const list = h('table.plain-table', { 'data-test': 'users' },
    h('thead', h('tr',
      h('th', t('users.username')), h('th', t('users.role')), h('th', t('users.addresses')),
      h('th', t('users.source')), h('th', t('users.last_login')), h('th', ''))),
    tbody);

  const username = h('input.input', { id: 'u-name', name: 'username', required: true, autocomplete: 'off' });
  const password = h('input.input', { id: 'u-pass', name: 'password', type: 'password', autocomplete: 'new-password' });
  const role = h('select.input', { id: 'u-role', name: 'role' }, ROLES.map((r) => h('option', { value: r }, t('role.' + r))));
  const addresses = h('textarea.input', { id: 'u-addr', name: 'addresses', rows: 3, placeholder: t('users.addresses_hint') });
  const form = h('form.card-form', {
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        const body = {
          username: username.value.trim(),
          password: password.value,
          role: role.value,
          addresses: addresses.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean),
        };
        try {
          await api('POST', '/api/v1/users', body);
          notify(t('users.created', { name: body.username }));
          form.reset();
          load();
        } catch (e) {
          notifyError(e);
        }
      },
    },
  },
  h('h2.section-title', t('users.add')),
  h('div.form-grid',
    h('label.field', { for: 'u-name' }, h('span.field-label', t('users.username')), username),
    h('label.field', { for: 'u-pass' }, h('span.field-label', t('users.password')), password),
    h('label.field', { for: 'u-role' }, h('span.field-label', t('users.role')), role),
    h('label.field.field-wide', { for: 'u-addr' }, h('span.field-label', t('users.addresses')), addresses)),
  h('div.form-actions', h('button.btn.btn-primary', { type: 'submit', 'data-test': 'create-user' }, t('users.create'))));

  main.append(h('h1.page-title', t('users.title')), h('div.table-wrap', list), form);

  async function remove(u) {
    const ok = await modal({
      title: t('users.delete_title'),
      body: [h('p', t('users.delete_confirm', { name: u.username }))],
      confirm: t('action.delete'), cancel: t('action.cancel'), danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', '/api/v1/users/' + encodeURIComponent(u.username));
      notify(t('users.deleted', { name: u.username }));
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  async function load() {
    try {
      const doc = await api('GET', '/api/v1/users');
      const users = (doc && doc.users) || [];
      clear(tbody);
      if (!users.length) tbody.append(h('tr', h('td.empty', { colspan: 6 }, t('users.empty'))));
      for (const u of users) {
        tbody.append(h('tr',
          h('td', h('strong', u.username)),
          h('td', t('role.' + u.role)),
          h('td', (u.addresses || []).map((a) => h('div', a))),
          h('td', u.source || 'local'),
          h('td', u.last_login_at ? formatDate(u.last_login_at) : '—'),
          h('td.num', h('button.btn.btn-small.btn-danger-outline', { type: 'button', on: { click: () => remove(u) } }, t('action.delete')))));
      }
    } catch (e) {
      clear(tbody).append(h('tr', h('td.empty.error', { colspan: 6 }, e.message)));
    }
  }
  load();
}

function auditRows(doc) {
  if (!doc) return [];
  for (const k of ['entries', 'audit', 'events', 'items']) {
    if (Array.isArray(doc[k])) return doc[k];
  }
  return [];
}

export function renderAudit(main) {
  const tbody = h('tbody');
  const table = h('table.plain-table', { 'data-test': 'audit' },
    h('thead', h('tr',
      h('th', t('audit.at')), h('th', t('audit.actor')), h('th', t('audit.action')),
      h('th', t('audit.target')), h('th', t('audit.peer')), h('th', t('audit.detail')))),
    tbody);
  const older = h('button.btn.btn-small', { type: 'button', disabled: true }, t('list.older'));
  main.append(h('h1.page-title', t('audit.title')), h('div.table-wrap', table), h('div.toolbar', h('div'), h('div.toolbar-right', older)));
  let next = null;

  async function load(params, append) {
    try {
      const doc = await api('GET', '/api/v1/audit' + query(params));
      const rows = auditRows(doc);
      if (!append) clear(tbody);
      if (!rows.length && !append) tbody.append(h('tr', h('td.empty', { colspan: 6 }, t('audit.empty'))));
      for (const r of rows) {
        const detail = r.detail && typeof r.detail === 'object' ? JSON.stringify(r.detail) : r.detail;
        tbody.append(h('tr',
          h('td.col-date', formatDate(r.at, { seconds: true })),
          h('td', r.actor || ''),
          h('td', h('code', r.action || '')),
          h('td', r.target || ''),
          h('td', r.peer || ''),
          h('td.cell-detail', detail || '')));
      }
      if (doc && doc.next_cursor) next = { cursor: doc.next_cursor };
      else if (doc && doc.next_before) next = { before: doc.next_before };
      else next = null;
      older.disabled = !next;
    } catch (e) {
      clear(tbody).append(h('tr', h('td.empty.error', { colspan: 6 }, e.message)));
    }
  }
  older.addEventListener('click', () => { if (next) load(next, true); });
  load({}, false);
}
