// The message list: quarantine overview (staff), search with every filter of the
// API, a dense table with keyset paging, selection and bulk actions, keyboard use.
// The filters live in the address (?subject=...&state=...), so back/forward work.

import { api, query } from './api.js';
import { h, append, clear, modal, formatBytes } from './dom.js';
import { t, formatDate, formatNumber, isoToLocalInput, localInputToIso } from './i18n.js';
import { session, isStaff, navigate, notify, notifyError } from './session.js';
import { STATES, VERDICTS, stateBadge, verdictBadge, membershipBadge } from './badges.js';
import { releaseWithSafelist } from './message.js';
import { askAction, pvoBulk, pvoMatching, hasBulkRoute, failureText, allowedActions, isPvoType, typeLabel } from './pvo.js';

const FILTERS = ['quarantine', 'recipient', 'sender', 'subject', 'since', 'until', 'verdict', 'gateway', 'state'];
const PAGE_SIZE = 50;

function currentFilter() {
  const q = new URLSearchParams(location.search);
  const f = {};
  for (const k of FILTERS) {
    const v = q.get(k);
    if (v) f[k] = v;
  }
  return f;
}

function filterLabel(k, v) {
  if (k === 'since' || k === 'until') return formatDate(v);
  if (k === 'state') return t('state.' + v);
  if (k === 'verdict') return t('verdict.' + v);
  return v;
}

// Which recipients of m the list shows: an end user sees only their own.
function visibleRecipients(m) {
  const u = session.user;
  if (isStaff() || !u || !Array.isArray(u.addresses)) return m.recipients || [];
  const mine = new Set(u.addresses.map((a) => a.toLowerCase()));
  const own = (m.recipients || []).filter((r) => mine.has(String(r.address).toLowerCase()));
  return own.length ? own : m.recipients || [];
}

function overview(container) {
  api('GET', '/api/v1/quarantines').then((doc) => {
    const list = (doc && doc.quarantines) || [];
    clear(container);
    if (!list.length) {
      container.append(h('p.muted', t('overview.none')));
      return;
    }
    append(container, list.map((q) => h('button.card', {
      type: 'button',
      'data-test': 'quarantine-card',
      on: { click: () => navigate('/messages' + query({ quarantine: q.name })) },
    },
    h('div.card-title', h('span.card-name', q.name), h('span.card-type', typeLabel(q.type))),
    h('div.card-stats',
      h('div.stat', h('span.stat-value', formatNumber(q.messages)), h('span.stat-label', t('overview.messages'))),
      h('div.stat', h('span.stat-value', formatBytes(q.bytes)), h('span.stat-label', t('overview.size'))),
      h('div.stat', h('span.stat-value.stat-date', q.oldest ? formatDate(q.oldest) : '—'), h('span.stat-label', t('overview.oldest')))))));
  }).catch(() => { clear(container); });
}

function selectField(name, options, value) {
  return h('select.input', { id: 'f-' + name, name },
    h('option', { value: '' }, t('filter.any')),
    options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}

function searchForm(filter, quarantines) {
  const staff = isStaff();
  const subject = h('input.input.search-input', {
    id: 'f-subject', name: 'subject', type: 'search', value: filter.subject || '',
    placeholder: t('search.placeholder'), 'aria-label': t('filter.subject'), 'data-test': 'search',
  });
  const field = (name, input) => h('label.field.field-compact', { for: 'f-' + name }, h('span.field-label', t('filter.' + name)), input);
  const text = (name) => h('input.input', { id: 'f-' + name, name, value: filter[name] || '', autocomplete: 'off' });
  const dt = (name) => h('input.input', { id: 'f-' + name, name, type: 'datetime-local', value: isoToLocalInput(filter[name]) });
  const advancedOpen = FILTERS.some((k) => k !== 'subject' && filter[k]);
  const fields = [];
  if (staff) fields.push(field('quarantine', selectField('quarantine', quarantines.map((q) => [q, q]), filter.quarantine)));
  fields.push(field('recipient', text('recipient')), field('sender', text('sender')),
    field('since', dt('since')), field('until', dt('until')),
    field('verdict', selectField('verdict', VERDICTS.map((v) => [v, t('verdict.' + v)]), filter.verdict)));
  if (staff) fields.push(field('gateway', text('gateway')));
  fields.push(field('state', selectField('state', STATES.map((s) => [s, t('state.' + s)]), filter.state)));
  const details = h('details.filters', { open: advancedOpen },
    h('summary.filters-toggle', t('search.more')),
    h('div.filter-grid', fields));
  const form = h('form.search', {
    role: 'search',
    on: {
      submit: (ev) => {
        ev.preventDefault();
        const data = new FormData(form);
        const f = {};
        for (const k of FILTERS) {
          let v = data.get(k);
          if (v === null) continue;
          v = String(v).trim();
          if (k === 'since' || k === 'until') v = localInputToIso(v);
          if (v) f[k] = v;
        }
        navigate('/messages' + query(f));
      },
    },
  },
  h('div.search-row', subject,
    h('button.btn.btn-primary', { type: 'submit', 'data-test': 'search-submit' }, t('search.submit')),
    h('button.btn', { type: 'button', on: { click: () => navigate('/messages') } }, t('search.clear'))),
  details);
  return { form, subject };
}

export function renderMessages(main) {
  const staff = isStaff();
  const filter = currentFilter();
  const state = { messages: [], cursors: [null], page: 0, next: null, selected: new Set(), focus: -1 };

  const overviewBox = h('section.cards', { 'aria-label': t('overview.title') });
  const formBox = h('div');
  const tbody = h('tbody');
  const selectAll = h('input', { type: 'checkbox', 'aria-label': t('list.select_all'), 'data-test': 'select-all' });
  const expiresHead = h('th', t('col.expires'));
  const keysHint = h('p.keys-hint', t('keys.hint'));
  const table = h('table.msg-table', { 'data-test': 'messages' },
    h('thead', h('tr',
      h('th.col-check', selectAll),
      h('th', t('col.from')),
      h('th', t('col.subject')),
      h('th', t('col.recipients')),
      h('th.num', t('col.score')),
      h('th', t('col.received')),
      expiresHead)),
    tbody);
  const info = h('span.muted.toolbar-info', { 'data-test': 'selection' });
  const newer = h('button.btn.btn-small', { type: 'button', 'data-test': 'newer', disabled: true }, t('list.newer'));
  const older = h('button.btn.btn-small', { type: 'button', 'data-test': 'older', disabled: true }, t('list.older'));
  const relSel = h('button.btn.btn-small', { type: 'button', 'data-test': 'release-selected', disabled: true }, t('action.release_selected'));
  const delSel = h('button.btn.btn-small.btn-danger-outline', { type: 'button', 'data-test': 'delete-selected', disabled: true }, t('action.delete_selected'));
  const bulkButtons = [];
  if (staff) {
    bulkButtons.push(
      h('button.btn.btn-small', { type: 'button', 'data-test': 'release-matching', on: { click: () => byFilter(true) } }, t('action.release_matching')),
      h('button.btn.btn-small.btn-danger-outline', { type: 'button', 'data-test': 'delete-matching', on: { click: () => byFilter(false) } }, t('action.delete_matching')));
  }
  // In a PVO quarantine (?quarantine=<policy, virus, ...>): its own actions, on the
  // selection or on everything the filter matches.
  const pvo = { on: false, busy: false, moveTargets: [] };
  const pvoSelect = h('select.input.input-auto', { id: 'pvo-action', 'data-test': 'pvo-action' },
    allowedActions().map((a) => h('option', { value: a }, t('pvo.name.' + a))));
  const pvoSelBtn = h('button.btn.btn-small', { type: 'button', 'data-test': 'pvo-apply-selected', disabled: true,
    on: { click: () => pvoRun(pvoSelect.value, 'selected') } }, t('pvo.apply_selected'));
  const pvoAllBtn = h('button.btn.btn-small', { type: 'button', 'data-test': 'pvo-apply-matching',
    on: { click: () => pvoRun(pvoSelect.value, 'matching') } }, t('pvo.apply_matching'));
  const pvoBar = h('div.pvo-bar', { role: 'group', 'aria-labelledby': 'pvo-bar-label', hidden: true, 'data-test': 'pvo-bar' },
    h('label.pvo-bar-label', { id: 'pvo-bar-label', for: 'pvo-action', title: filter.quarantine || null }, t('pvo.toolbar_label', { q: filter.quarantine || '' })),
    pvoSelect, pvoSelBtn, pvoAllBtn);
  const toolbar = h('div.toolbar',
    h('div.toolbar-left', relSel, delSel, bulkButtons, pvoBar, info),
    h('div.toolbar-right', newer, older));

  if (staff) main.append(h('h1.sr-only', t('nav.messages')), overviewBox);
  main.append(formBox, toolbar, h('div.table-wrap', table), keysHint);

  let subjectInput = null;
  // What the list asks the API for: in a PVO quarantine, unless a state is chosen,
  // the messages still waiting (a message released from every quarantine, or
  // deleted from one, leaves the list as it leaves the quarantine).
  let listFilter = filter;
  // A list of one quarantine waits to know its type before it loads.
  const waitType = staff && Boolean(filter.quarantine);
  if (staff) {
    overview(overviewBox);
    api('GET', '/api/v1/quarantines').then((doc) => {
      const list = (doc && doc.quarantines) || [];
      pvoMode(list);
      build(list.map((q) => q.name));
    }).catch(() => build([])).finally(() => { if (waitType) load(); });
  } else {
    build([]);
  }
  function build(quarantines) {
    const { form, subject } = searchForm(filter, quarantines);
    subjectInput = subject;
    clear(formBox).append(form);
  }

  function pvoMode(list) {
    const cur = list.find((q) => q.name === filter.quarantine);
    if (!cur || !isPvoType(cur.type)) return;
    pvo.on = true;
    if (!filter.state) listFilter = { ...filter, state: 'quarantined' };
    pvo.moveTargets = list.filter((q) => q.type === 'policy' && q.name !== cur.name).map((q) => q.name);
    pvoBar.hidden = false;
    expiresHead.textContent = t('pvo.expires');
    keysHint.textContent = t('keys.hint_pvo');
    for (const b of [relSel, delSel, ...bulkButtons]) b.hidden = true;
  }

  // The ids of every message the filter matches, page by page.
  async function matchingIds() {
    const ids = [];
    let cursor = null;
    do {
      const doc = await api('GET', '/api/v1/messages' + query({ ...listFilter, limit: 1000, cursor }));
      for (const m of (doc && doc.messages) || []) {
        // held in this quarantine: the ones an action here changes
        const mem = (m.quarantines || []).find((x) => x.name === filter.quarantine);
        if (!mem || mem.state === 'held') ids.push(m.id);
      }
      cursor = doc && doc.next_cursor;
    } while (cursor);
    return ids;
  }

  async function pvoRun(action, scope) {
    if (pvo.busy) return;
    const q = filter.quarantine;
    let ids;
    let target;
    if (scope === 'matching') {
      try {
        ids = await matchingIds();
      } catch (e) {
        notify(failureText(e), 'error');
        return;
      }
      target = t('pvo.matching', { n: ids.length });
    } else {
      ids = targets().map((m) => m.id);
      target = ids.length === 1 ? t('pvo.this') : t('pvo.selected', { n: ids.length });
    }
    if (!ids.length) {
      notify(t(scope === 'matching' ? 'list.empty' : 'pvo.choose_first'), 'error');
      return;
    }
    const body = await askAction(action, { target, quarantine: q, moveTargets: pvo.moveTargets });
    if (!body) return;
    // One at a time: the buttons wait until this run is over.
    pvoBar.querySelectorAll('button, select').forEach((el) => { el.disabled = true; });
    notify(t('pvo.working', { n: ids.length }));
    const name = t('pvo.name.' + action);
    pvo.busy = true;
    try {
      if (scope === 'matching' && hasBulkRoute(action)) {
        // One request for all of them: the store skips what is no longer held.
        const doc = await pvoMatching(action, q, currentFilter(), body);
        const changed = (doc && doc.changed) || 0;
        const queued = (doc && doc.queued) || 0;
        notify(t('pvo.bulk_changed', { action: name, n: changed }) + (queued ? ' ' + t('pvo.bulk_queued', { n: queued }) : ''));
      } else {
        const r = await pvoBulk(ids, action, body);
        const text = t('pvo.bulk_result', { action: name, done: r.done, failed: r.failed });
        if (r.failed) notify(text + ' ' + t('pvo.first_error', { message: failureText(r.errors[0].error) }), 'error');
        else notify(text);
      }
    } catch (e) {
      notify(t('pvo.failed', { action: name, message: failureText(e) }), 'error');
    } finally {
      pvo.busy = false;
      pvoSelect.disabled = pvoAllBtn.disabled = false;
      updateToolbar();
    }
    state.page = 0;
    state.cursors = [null];
    load();
    overview(overviewBox); // the counts changed
  }

  function updateToolbar() {
    const n = state.selected.size;
    relSel.disabled = delSel.disabled = pvoSelBtn.disabled = n === 0;
    info.textContent = n ? t('list.selected', { n }) : (state.messages.length ? t('list.count', { n: state.messages.length }) : '');
    newer.disabled = state.page === 0;
    older.disabled = !state.next;
    selectAll.checked = state.messages.length > 0 && state.messages.every((m) => state.selected.has(m.id));
    selectAll.indeterminate = n > 0 && !selectAll.checked;
  }

  function rowFor(m, i) {
    const check = h('input', { type: 'checkbox', 'aria-label': t('col.select'), checked: state.selected.has(m.id), tabindex: '-1' });
    check.addEventListener('click', (ev) => { ev.stopPropagation(); toggle(i, check.checked); });
    const rcpts = visibleRecipients(m);
    const fromText = m.from || m.sender || '';
    // A PVO message: why it is in the quarantine listed, and until when.
    const qs = Array.isArray(m.quarantines) ? m.quarantines : [];
    const mem = filter.quarantine ? qs.find((q) => q.name === filter.quarantine) : null;
    const expires = mem ? mem.expires_at : m.expires_at;
    const why = mem ? (mem.reason ? t('list.reason', { reason: mem.reason }) : null)
      : qs.length ? t('list.in_quarantines', { names: qs.map((q) => q.name).join(', ') }) : null;
    const row = h('tr.msg-row', {
      tabindex: '-1',
      'data-id': m.id,
      'aria-selected': state.selected.has(m.id) ? 'true' : 'false',
      on: {
        click: () => open(i),
        focus: () => setFocus(i, false),
      },
    },
    h('td.col-check', check),
    h('td.col-from', h('div.cell-main', { title: fromText }, fromText), m.from && m.sender && !m.from.includes(m.sender)
      ? h('div.cell-sub', { title: m.sender }, m.sender) : null),
    h('td.col-subject', h('a.subject-link', {
      href: '/m/' + m.id,
      title: m.subject || '',
      tabindex: '-1',
      on: { click: (ev) => { ev.preventDefault(); ev.stopPropagation(); open(i); } },
    }, m.subject || t('list.no_subject')), h('div.cell-sub', { title: why || null }, verdictBadge(m.verdict), why ? h('span.reason', { 'data-test': 'row-reason' }, why) : null,
      // no longer held here (released from this one, held in another)
      mem && mem.state !== 'held' ? [' ', membershipBadge(mem.state)] : null)),
    h('td.col-rcpt', rcpts.slice(0, 3).map((r) => h('div.rcpt', h('span.rcpt-addr', { title: r.address }, r.address), ' ', stateBadge(r.state))),
      rcpts.length > 3 ? h('div.muted', '+' + (rcpts.length - 3)) : null),
    h('td.num.col-score', m.score === null || m.score === undefined ? '—' : formatNumber(m.score, 1)),
    h('td.col-date', formatDate(m.received_at)),
    h('td.col-date', expires ? formatDate(expires) : '—'));
    return row;
  }

  function render() {
    clear(tbody);
    if (!state.messages.length) {
      tbody.append(h('tr', h('td.empty', { colspan: 7 }, t('list.empty'))));
    } else {
      state.messages.forEach((m, i) => tbody.append(rowFor(m, i)));
    }
    if (state.focus >= state.messages.length) state.focus = state.messages.length - 1;
    markFocus();
    updateToolbar();
  }

  function rows() { return Array.from(tbody.querySelectorAll('tr.msg-row')); }

  function markFocus() {
    rows().forEach((r, i) => r.classList.toggle('focused', i === state.focus));
  }

  function setFocus(i, move = true) {
    if (!state.messages.length) return;
    state.focus = Math.max(0, Math.min(i, state.messages.length - 1));
    markFocus();
    const r = rows()[state.focus];
    if (r && move) { r.focus(); r.scrollIntoView({ block: 'nearest' }); }
  }

  function toggle(i, on) {
    const m = state.messages[i];
    if (!m) return;
    const want = on === undefined ? !state.selected.has(m.id) : on;
    if (want) state.selected.add(m.id); else state.selected.delete(m.id);
    const r = rows()[i];
    if (r) {
      r.setAttribute('aria-selected', want ? 'true' : 'false');
      r.querySelector('input[type=checkbox]').checked = want;
    }
    updateToolbar();
  }

  function open(i) {
    const m = state.messages[i];
    if (m) navigate('/m/' + m.id);
  }

  async function load() {
    clear(tbody).append(h('tr', h('td.empty.loading', { colspan: 7 }, t('list.loading'))));
    try {
      const cursor = state.cursors[state.page];
      const doc = await api('GET', '/api/v1/messages' + query({ ...listFilter, limit: PAGE_SIZE, cursor }));
      state.messages = (doc && doc.messages) || [];
      state.next = doc && doc.next_cursor ? doc.next_cursor : null;
      state.selected.clear();
      state.focus = state.messages.length ? 0 : -1;
      render();
    } catch (e) {
      clear(tbody).append(h('tr', h('td.empty.error', { colspan: 7 }, e.message)));
      notifyError(e);
    }
  }

  // Acts on the selection, or on the focused row when nothing is selected.
  function targets() {
    if (state.selected.size) return state.messages.filter((m) => state.selected.has(m.id));
    const m = state.messages[state.focus];
    return m ? [m] : [];
  }

  async function act(release) {
    const list = targets();
    if (!list.length) return;
    if (list.length === 1 && !staff && release) {
      if (await releaseWithSafelist(list[0])) load();
      return;
    }
    const n = list.length;
    const ok = await modal({
      title: t(release ? 'confirm.release_title' : 'confirm.delete_title'),
      body: [h('p', t(release ? 'confirm.release_selected' : 'confirm.delete_selected', { n }))],
      confirm: t(release ? 'action.release' : 'action.delete'),
      cancel: t('action.cancel'),
      danger: !release,
    });
    if (!ok) return;
    try {
      const doc = await api('POST', '/api/v1/messages/' + (release ? 'release' : 'delete'), { ids: list.map((m) => m.id) });
      notify(t(release ? 'done.released' : 'done.deleted', { n: doc && typeof doc.changed === 'number' ? doc.changed : n }));
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  async function byFilter(release) {
    const f = currentFilter();
    if (!Object.keys(f).length) {
      notify(t('confirm.need_filter'), 'error');
      return;
    }
    const ok = await modal({
      title: t(release ? 'confirm.release_title' : 'confirm.delete_title'),
      body: [
        h('p', t(release ? 'confirm.release_matching' : 'confirm.delete_matching')),
        h('dl.filter-summary', { 'data-test': 'filter-summary' }, Object.entries(f).map(([k, v]) => [h('dt', t('filter.' + k)), h('dd', filterLabel(k, v))])),
      ],
      confirm: t(release ? 'action.release' : 'action.delete'),
      cancel: t('action.cancel'),
      danger: !release,
    });
    if (!ok) return;
    try {
      const doc = await api('POST', '/api/v1/messages/' + (release ? 'release' : 'delete'), { filter: f });
      notify(t(release ? 'done.released' : 'done.deleted', { n: doc && doc.changed }));
      state.page = 0;
      state.cursors = [null];
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  relSel.addEventListener('click', () => act(true));
  delSel.addEventListener('click', () => act(false));
  selectAll.addEventListener('change', () => {
    // Read once: each toggle updates the box (unchecked until all are selected).
    const on = selectAll.checked;
    state.messages.forEach((m, i) => toggle(i, on));
  });
  newer.addEventListener('click', () => { if (state.page > 0) { state.page--; load(); } });
  older.addEventListener('click', () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page++;
    load();
  });

  function onKey(ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (document.querySelector('dialog[open]')) return;
    const tag = ev.target && ev.target.tagName;
    const typing = tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT';
    if (typing) {
      if (ev.key === 'Escape') ev.target.blur();
      return;
    }
    switch (ev.key) {
      case 'j': case 'ArrowDown': setFocus(state.focus + 1); break;
      case 'k': case 'ArrowUp': setFocus(state.focus - 1); break;
      case 'x': case ' ': toggle(state.focus); break;
      case 'Enter': if (ev.target.tagName === 'BUTTON' || ev.target.tagName === 'A' && !ev.target.closest('tr')) return; open(state.focus); break;
      case 'r': if (pvo.on) pvoRun('release', 'selected'); else act(true); break;
      case 'd': if (pvo.on) pvoRun('delete', 'selected'); else act(false); break;
      case '/': if (subjectInput) { subjectInput.focus(); subjectInput.select(); } break;
      default: return;
    }
    ev.preventDefault();
  }
  document.addEventListener('keydown', onKey);

  if (!waitType) load();
  return () => document.removeEventListener('keydown', onKey);
}
