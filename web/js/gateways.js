// The administrators' Gateways page: the manager's gateway registry
// (GET/POST /api/v1/gateways, DELETE /api/v1/gateways/{name}). A registration
// shows the gateway's token once; the page never stores it. Pending gateways
// (they said hello without a token) can be registered from their row. Each
// row also shows the events waiting on the gateway at its last push and the
// time of its newest event stored here (the tracking backlog and lag), and its
// migration to centralized PVO quarantines (progress as the gateway reports it);
// "Mapping…" opens the editor of how its local quarantines map to central ones
// (GET/PUT /api/v1/gateways/{name}/mapping; locked while it migrates).

import { api } from './api.js';
import { h, clear, modal } from './dom.js';
import { t, formatDate } from './i18n.js';
import { notify, notifyError } from './session.js';

// "Migrating 1200/20000 (3 failed)", "Migrated <date>", or '—' when it never did;
// a finished one whose mail is not sent yet, or was refused for good, says so.
function migrationText(m) {
  if (!m) return '—';
  const failed = m.failed > 0 ? t('gateways.migration_failed', { failed: m.failed }) : '';
  if (m.state === 'done') {
    const mail = m.notice && m.notice.state === 'pending' ? t('gateways.mail_pending')
      : m.notice && m.notice.state === 'failed' ? t('gateways.mail_failed') : '';
    return t('gateways.migrated', { date: formatDate(m.finished_at, { seconds: true }) }) + failed + mail;
  }
  return t('gateways.migrating', { done: m.done, total: m.total }) + failed;
}

function stateBadge(state) {
  return h('span.badge.badge-' + (state === 'pending' ? 'quarantined' : 'released'),
    { 'data-state': state }, t('gateways.state.' + (state === 'pending' ? 'pending' : 'registered')));
}

export function renderGateways(main) {
  const tbody = h('tbody');
  const list = h('table.plain-table', { 'data-test': 'gateways' },
    h('thead', h('tr',
      h('th', t('gateways.name')), h('th', t('gateways.address')), h('th', t('gateways.group')),
      h('th', t('gateways.cluster')), h('th', t('gateways.state')), h('th', t('gateways.last_seen')),
      h('th', t('gateways.version')), h('th.num', t('gateways.event_backlog')),
      h('th', t('gateways.last_event')), h('th', t('gateways.migration')), h('th', ''))),
    tbody);

  const name = h('input.input', { id: 'g-name', name: 'name', required: true, autocomplete: 'off', maxlength: 64, pattern: '[A-Za-z0-9._\\-]{1,64}' });
  const address = h('input.input', { id: 'g-address', name: 'address', required: true, autocomplete: 'off', placeholder: '192.0.2.10' });
  const group = h('input.input', { id: 'g-group', name: 'group', autocomplete: 'off', maxlength: 64 });
  const cluster = h('input.input', { id: 'g-cluster', name: 'cluster', autocomplete: 'off', maxlength: 64 });
  const port = h('input.input', { id: 'g-port', name: 'release_port', type: 'number', min: 1, max: 65535, value: '25' });
  // The token of the last registration, shown once: gone when the page is left.
  const tokenBox = h('div.token-once', { 'data-test': 'gateway-token', hidden: true });

  const form = h('form.card-form', {
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        const body = { name: name.value.trim(), address: address.value.trim() };
        if (group.value.trim()) body.group = group.value.trim();
        if (cluster.value.trim()) body.cluster = cluster.value.trim();
        if (port.value.trim()) body.release_port = Number(port.value);
        try {
          const doc = await api('POST', '/api/v1/gateways', body);
          showToken(doc.gateway.name, doc.token);
          notify(t('gateways.added', { name: doc.gateway.name }));
          form.reset();
          load();
        } catch (e) {
          notifyError(e);
        }
      },
    },
  },
  h('h2.section-title', t('gateways.add')),
  h('p.note', t('gateways.add_intro')),
  h('div.form-grid',
    h('label.field', { for: 'g-name' }, h('span.field-label', t('gateways.name')), name),
    h('label.field', { for: 'g-address' }, h('span.field-label', t('gateways.address')), address),
    h('label.field', { for: 'g-group' }, h('span.field-label', t('gateways.group')), group),
    h('label.field', { for: 'g-cluster' }, h('span.field-label', t('gateways.cluster')), cluster),
    h('label.field', { for: 'g-port' }, h('span.field-label', t('gateways.release_port')), port)),
  h('div.form-actions', h('button.btn.btn-primary', { type: 'submit', 'data-test': 'add-gateway' }, t('gateways.create'))));

  // The mapping editor of one gateway, under the list.
  const mapBox = h('div.card-form', { 'data-test': 'mapping-editor', hidden: true });

  main.append(h('h1.page-title', t('gateways.title')), h('p.note', t('gateways.intro')),
    h('div.table-wrap', list), mapBox, tokenBox, form);

  async function editMapping(g) {
    let doc;
    try {
      doc = await api('GET', '/api/v1/gateways/' + encodeURIComponent(g.name) + '/mapping');
    } catch (e) {
      notifyError(e);
      return;
    }
    const mode = h('select.input', { id: 'm-mode', 'data-test': 'mapping-mode' },
      h('option', { value: 'automatic' }, t('gateways.mapping_automatic')),
      h('option', { value: 'custom' }, t('gateways.mapping_custom')));
    mode.value = doc.mode;
    const rows = h('tbody', { 'data-test': 'mapping-rows' });
    const table = h('table.plain-table',
      h('thead', h('tr', h('th', t('gateways.mapping_local')), h('th', t('gateways.mapping_central')),
        h('th', t('gateways.mapping_drop')), h('th', ''))),
      rows);
    const addRow = (local, central) => {
      const l = h('input.input', { 'data-test': 'mapping-local', maxlength: 64, value: local, 'aria-label': t('gateways.mapping_local') });
      const c = h('input.input', { 'data-test': 'mapping-central', maxlength: 64, value: central || '', 'aria-label': t('gateways.mapping_central') });
      const drop = h('input', { type: 'checkbox', 'data-test': 'mapping-drop', 'aria-label': t('gateways.mapping_drop') });
      drop.checked = central === null;
      c.disabled = drop.checked;
      drop.addEventListener('change', () => { c.disabled = drop.checked; });
      const tr = h('tr', h('td', l), h('td', c), h('td', drop),
        h('td', h('button.btn.btn-small', { type: 'button', 'data-test': 'mapping-remove', on: { click: () => tr.remove() } }, t('gateways.mapping_remove_row'))));
      tr.read = () => [l.value.trim(), drop.checked ? null : c.value.trim()];
      rows.append(tr);
      return l;
    };
    for (const [k, v] of Object.entries(doc.mapping)) addRow(k, v);
    const custom = h('div', table,
      h('div.form-actions', h('button.btn.btn-small', { type: 'button', 'data-test': 'mapping-add', on: { click: () => addRow('', '').focus() } }, t('gateways.mapping_add'))));
    const showMode = () => { custom.hidden = mode.value !== 'custom'; };
    mode.addEventListener('change', () => {
      if (mode.value === 'custom' && !rows.children.length) addRow('', '');
      showMode();
    });
    showMode();
    const save = async () => {
      const body = {};
      if (mode.value === 'custom') {
        for (const tr of rows.children) {
          const [k, v] = tr.read();
          if (k) body[k] = v;
        }
      }
      try {
        await api('PUT', '/api/v1/gateways/' + encodeURIComponent(g.name) + '/mapping', body);
        notify(t('gateways.mapping_saved', { name: g.name }));
        editMapping(g);
      } catch (e) {
        notifyError(e);
      }
    };
    clear(mapBox).append(
      h('h2.section-title', t('gateways.mapping_title', { name: g.name })),
      h('p.note', t('gateways.mapping_intro')),
      g.migration ? h('p', { 'data-test': 'mapping-migration' }, migrationText(g.migration)) : null,
      h('label.field', { for: 'm-mode' }, h('span.field-label', t('gateways.mapping_mode')), mode),
      custom,
      h('div.form-actions',
        h('button.btn.btn-primary', { type: 'button', 'data-test': 'mapping-save', on: { click: save } }, t('gateways.mapping_save')),
        ' ',
        h('button.btn', { type: 'button', 'data-test': 'mapping-close', on: { click: () => { clear(mapBox); mapBox.hidden = true; } } }, t('gateways.mapping_close'))));
    mapBox.hidden = false;
    mapBox.scrollIntoView({ block: 'nearest' });
  }

  function showToken(gwName, token) {
    const field = h('input.input.token-value', { type: 'text', readonly: true, value: token, 'aria-label': t('gateways.token'), 'data-test': 'gateway-token-value', spellcheck: 'false' });
    field.addEventListener('focus', () => field.select());
    clear(tokenBox).append(
      h('h2.section-title', t('gateways.token_title', { name: gwName })),
      h('p', t('gateways.token_once')),
      field,
      h('p.note', t('gateways.token_where')),
      h('div.form-actions', h('button.btn.btn-small', {
        type: 'button', 'data-test': 'gateway-token-done',
        on: { click: () => { clear(tokenBox); tokenBox.hidden = true; } },
      }, t('gateways.token_done'))));
    tokenBox.hidden = false;
    field.focus();
  }

  function fillFrom(g) {
    name.value = g.name;
    address.value = g.address || '';
    group.value = g.group || '';
    cluster.value = g.cluster || '';
    name.focus();
    form.scrollIntoView({ block: 'nearest' });
  }

  async function remove(g) {
    const ok = await modal({
      title: t('gateways.remove_title'),
      body: [h('p', t(g.state === 'pending' ? 'gateways.remove_pending_confirm' : 'gateways.remove_confirm', { name: g.name }))],
      confirm: t('gateways.remove'), cancel: t('action.cancel'), danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', '/api/v1/gateways/' + encodeURIComponent(g.name));
      notify(t('gateways.removed', { name: g.name }));
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  async function load() {
    try {
      const doc = await api('GET', '/api/v1/gateways');
      const gateways = (doc && doc.gateways) || [];
      clear(tbody);
      if (!gateways.length) tbody.append(h('tr', h('td.empty', { colspan: 11 }, t('gateways.empty'))));
      for (const g of gateways) {
        tbody.append(h('tr', { 'data-gateway': g.name },
          h('td', h('strong', g.name)),
          h('td', h('code', g.address || '')),
          h('td', g.group || '—'),
          h('td', g.cluster || '—'),
          h('td', stateBadge(g.state)),
          h('td.col-date', g.last_seen ? formatDate(g.last_seen, { seconds: true }) : t('gateways.never')),
          h('td', g.version || '—'),
          h('td.num', { 'data-test': 'event-backlog' },
            g.event_backlog === null || g.event_backlog === undefined ? '—' : String(g.event_backlog)),
          h('td.col-date', { 'data-test': 'last-event' },
            g.last_event_at ? formatDate(g.last_event_at, { seconds: true }) : '—'),
          h('td', { 'data-test': 'migration', 'data-state': g.migration ? g.migration.state : 'none' }, migrationText(g.migration)),
          h('td.num',
            g.state === 'pending'
              ? h('button.btn.btn-small', { type: 'button', 'data-test': 'register-pending', on: { click: () => fillFrom(g) } }, t('gateways.register'))
              : h('button.btn.btn-small', { type: 'button', 'data-test': 'edit-mapping', on: { click: () => editMapping(g) } }, t('gateways.mapping')),
            ' ',
            h('button.btn.btn-small.btn-danger-outline', { type: 'button', 'data-test': 'remove-gateway', on: { click: () => remove(g) } }, t('gateways.remove')))));
      }
    } catch (e) {
      clear(tbody).append(h('tr', h('td.empty.error', { colspan: 11 }, e.message)));
    }
  }
  load();
}
