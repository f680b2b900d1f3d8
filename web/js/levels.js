// The administrators' Levels page: centralization settings per cluster, group and
// machine (GET /api/v1/levels, PUT and DELETE /api/v1/levels/{level}/{name}).
// It shows which gateways are in which group and cluster, what each level sets,
// and what each gateway ends up with (and where each setting comes from) next to
// what the gateway says it runs with. A refused change shows the server's
// message, which names the level in the way.

import { api } from './api.js';
import { h, clear, modal } from './dom.js';
import { t } from './i18n.js';
import { notify, notifyError } from './session.js';

const KINDS = ['cluster', 'group', 'machine'];
const FLAGS = ['pvo', 'reporting', 'tracking'];

function flagText(v) {
  if (v === null || v === undefined) return '—';
  return t(v ? 'levels.on' : 'levels.off');
}

function filtersText(f) {
  if (f === null || f === undefined) return '—';
  const rules = f.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#')).length;
  return f.trim() ? t('levels.filters_rules', { n: rules }) : t('levels.filters_none');
}

function fromText(from) {
  return from ? t('levels.from', { level: t('levels.kind.' + from.level), name: from.name }) : t('levels.local');
}

export function renderLevels(main) {
  const levelBody = h('tbody');
  const levelTable = h('table.plain-table', { 'data-test': 'levels' },
    h('thead', h('tr',
      h('th', t('levels.level')), h('th', t('levels.name')), h('th', t('levels.members')),
      FLAGS.map((f) => h('th', t('levels.setting.' + f))), h('th', t('levels.setting.filters')),
      h('th', ''))),
    levelBody);
  const gwBody = h('tbody');
  const gwTable = h('table.plain-table', { 'data-test': 'level-gateways' },
    h('thead', h('tr',
      h('th', t('gateways.name')), h('th', t('gateways.group')), h('th', t('gateways.cluster')),
      FLAGS.map((f) => h('th', t('levels.setting.' + f))), h('th', t('levels.setting.filters')),
      h('th', t('levels.running')), h('th', ''))),
    gwBody);

  const kind = h('select.input', { id: 'l-kind', name: 'level', 'data-test': 'level-kind' },
    KINDS.map((k) => h('option', { value: k }, t('levels.kind.' + k))));
  const name = h('input.input', { id: 'l-name', name: 'name', required: true, autocomplete: 'off', maxlength: 64, pattern: '[A-Za-z0-9._\\-]{1,64}', 'data-test': 'level-name' });
  const selects = {};
  for (const f of FLAGS) {
    selects[f] = h('select.input', { id: 'l-' + f, name: f, 'data-test': 'level-' + f },
      h('option', { value: '' }, t('levels.inherit')),
      h('option', { value: 'on' }, t('levels.on')),
      h('option', { value: 'off' }, t('levels.off')));
  }
  const setFilters = h('input', { type: 'checkbox', id: 'l-set-filters', 'data-test': 'level-set-filters' });
  const filters = h('textarea.input.mono', { id: 'l-filters', rows: 6, spellcheck: 'false', 'data-test': 'level-filters' });

  const form = h('form.card-form', {
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        const body = {};
        for (const f of FLAGS) body[f] = selects[f].value === '' ? null : selects[f].value === 'on';
        body.filters = setFilters.checked ? filters.value : null;
        const path = '/api/v1/levels/' + kind.value + '/' + encodeURIComponent(name.value.trim());
        try {
          await api('PUT', path, body);
          notify(t('levels.saved', { level: t('levels.kind.' + kind.value), name: name.value.trim() }));
          load();
        } catch (e) {
          notifyError(e);
        }
      },
    },
  },
  h('h2.section-title', t('levels.edit')),
  h('p.note', t('levels.edit_intro')),
  h('div.form-grid',
    h('label.field', { for: 'l-kind' }, h('span.field-label', t('levels.level')), kind),
    h('label.field', { for: 'l-name' }, h('span.field-label', t('levels.name')), name),
    FLAGS.map((f) => h('label.field', { for: 'l-' + f }, h('span.field-label', t('levels.setting.' + f)), selects[f]))),
  h('label.check', { for: 'l-set-filters' }, setFilters, ' ', t('levels.set_filters')),
  h('label.field', { for: 'l-filters' }, h('span.field-label', t('levels.setting.filters')), filters),
  h('div.form-actions', h('button.btn.btn-primary', { type: 'submit', 'data-test': 'save-level' }, t('levels.save'))));

  main.append(h('h1.page-title', t('levels.title')), h('p.note', t('levels.intro')),
    h('h2.section-title', t('levels.levels')), h('div.table-wrap', levelTable),
    h('h2.section-title', t('levels.gateways')), h('p.note', t('levels.gateways_intro')),
    h('div.table-wrap', gwTable), form);

  function edit(lv) {
    kind.value = lv.level;
    name.value = lv.name;
    for (const f of FLAGS) {
      const v = lv.settings[f];
      selects[f].value = v === null ? '' : v ? 'on' : 'off';
    }
    setFilters.checked = lv.settings.filters !== null;
    filters.value = lv.settings.filters || '';
    name.focus();
    form.scrollIntoView({ block: 'nearest' });
  }

  async function remove(lv) {
    const what = { level: t('levels.kind.' + lv.level), name: lv.name };
    const ok = await modal({
      title: t('levels.remove_title'),
      body: [h('p', t('levels.remove_confirm', what))],
      confirm: t('levels.remove'), cancel: t('action.cancel'), danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', '/api/v1/levels/' + lv.level + '/' + encodeURIComponent(lv.name));
      notify(t('levels.removed', what));
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  // A gateway's group and cluster (PATCH /api/v1/gateways/{name}); empty is none.
  async function move(g) {
    const group = h('input.input', { id: 'm-group', value: g.group || '', maxlength: 64, autocomplete: 'off', 'data-test': 'move-group', 'data-autofocus': '' });
    const cluster = h('input.input', { id: 'm-cluster', value: g.cluster || '', maxlength: 64, autocomplete: 'off', 'data-test': 'move-cluster' });
    const ok = await modal({
      title: t('levels.move_title', { name: g.name }),
      body: [h('p', t('levels.move_intro')),
        h('label.field', { for: 'm-group' }, h('span.field-label', t('gateways.group')), group),
        h('label.field', { for: 'm-cluster' }, h('span.field-label', t('gateways.cluster')), cluster)],
      confirm: t('levels.save'), cancel: t('action.cancel'),
    });
    if (!ok) return;
    try {
      await api('PATCH', '/api/v1/gateways/' + encodeURIComponent(g.name),
        { group: group.value.trim() || null, cluster: cluster.value.trim() || null });
      notify(t('levels.moved', { name: g.name }));
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  function hasSettings(lv) {
    return FLAGS.some((f) => lv.settings[f] !== null) || lv.settings.filters !== null;
  }

  async function load() {
    try {
      const doc = await api('GET', '/api/v1/levels');
      clear(levelBody);
      if (!doc.levels.length) levelBody.append(h('tr', h('td.empty', { colspan: 8 }, t('levels.empty'))));
      const rank = (lv) => KINDS.indexOf(lv.level);
      const sorted = doc.levels.slice().sort((a, b) => rank(a) - rank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const lv of sorted) {
        const members = lv.members.join(', ') + (lv.pending.length ? ' ' + t('levels.pending', { names: lv.pending.join(', ') }) : '');
        levelBody.append(h('tr', { 'data-level': lv.level + '/' + lv.name },
          h('td', h('span.badge', t('levels.kind.' + lv.level))),
          h('td', h('strong', lv.name)),
          h('td', { 'data-test': 'members' }, members || '—'),
          FLAGS.map((f) => h('td', { 'data-test': 'set-' + f }, flagText(lv.settings[f]))),
          h('td', { 'data-test': 'set-filters' }, filtersText(lv.settings.filters)),
          h('td.num',
            h('button.btn.btn-small', { type: 'button', 'data-test': 'edit-level', on: { click: () => edit(lv) } }, t('levels.edit_button')),
            ' ',
            hasSettings(lv)
              ? h('button.btn.btn-small.btn-danger-outline', { type: 'button', 'data-test': 'remove-level', on: { click: () => remove(lv) } }, t('levels.remove'))
              : null)));
      }
      clear(gwBody);
      const gws = doc.gateways.filter((g) => g.state === 'registered');
      if (!gws.length) gwBody.append(h('tr', h('td.empty', { colspan: 9 }, t('gateways.empty'))));
      for (const g of gws) {
        const e = g.effective;
        const cell = (f, text) => h('td', { 'data-test': 'eff-' + f },
          h('div', text), h('div.muted.from', fromText(e.from[f])));
        const running = FLAGS.filter((f) => g.centralized[f]).map((f) => t('levels.setting.' + f));
        gwBody.append(h('tr', { 'data-gateway': g.name },
          h('td', h('strong', g.name)),
          h('td', g.group || '—'),
          h('td', g.cluster || '—'),
          FLAGS.map((f) => cell(f, flagText(e.settings[f]))),
          cell('filters', filtersText(e.settings.filters)),
          h('td', { 'data-test': 'running' }, running.length ? running.join(', ') : t('levels.running_none')),
          h('td.num', h('button.btn.btn-small', { type: 'button', 'data-test': 'move-gateway', on: { click: () => move(g) } }, t('levels.move')))));
      }
    } catch (e) {
      clear(levelBody).append(h('tr', h('td.empty.error', { colspan: 8 }, e.message)));
    }
  }
  load();
}
