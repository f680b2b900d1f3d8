// The administrators' Tracking page: where did a message go, across every gateway.
// The search (GET /api/v1/tracking/messages, every filter of the API, "more" pages
// following next_cursor) keeps its filters in the address (/tracking?subject=...),
// so back and forward work; one message's story (GET /api/v1/tracking/messages/{id})
// is /tracking/message?id=<gateway>~<msg_id> (a query: gateway names may have dots,
// which the static server reads as file names in a path).
//
// Everything the API says goes in as text (dom.js): subjects, addresses, replies and
// the events' details are what senders and remote servers wrote.
//
// The server decides who may track: a non-admin who comes here gets the API's 403,
// shown as it is, and never the search form.

import { api, query, ApiError } from './api.js';
import { h, clear, formatBytes } from './dom.js';
import { t, formatDate, formatNumber, isoToLocalInput, localInputToIso } from './i18n.js';
import { isAdmin, navigate } from './session.js';

export const EVENT_FLAGS = ['spam', 'suspect', 'virus', 'delivered', 'hard_bounce', 'soft_bounce', 'quarantined', 'outbreak', 'dlp'];
const SUBJECT_OPS = ['contains', 'begins', 'is'];
const TEXT_FILTERS = ['sender', 'recipient', 'message_id', 'gateway', 'client_ip', 'attachment'];
// limit: the page size, from the address only (a link or a bookmark may set it).
const FILTERS = ['since', 'until', 'subject', 'subject_op', 'event', ...TEXT_FILTERS, 'limit'];
const PAGE_SIZE = 50;

// The last state a message's events set, and the badge colour that says it.
const STATE_CLASS = {
  received: 'releasing', released: 'releasing', releasing: 'releasing',
  delivered: 'released',
  quarantined: 'quarantined', soft_bounce: 'quarantined', tempfailed: 'quarantined',
  hard_bounce: 'failed', bounced: 'failed', refused: 'failed', release_failed: 'failed',
  dropped: 'deleted', deleted: 'deleted', expired: 'expired',
};

// The fields of each event type's detail worth a line in the timeline (docs/GATEWAY.md
// "Events"); the whole detail is one click away.
const EVENT_FIELDS = {
  connection: ['client_ip', 'helo', 'tls_version', 'hat_policy', 'hat_decision', 'reason', 'reply'],
  rate_limit: ['client_ip', 'hat_policy', 'limit'],
  rcpt_accepted: ['rcpt'],
  rcpt_refused: ['rcpt', 'reply'],
  received: ['sender', 'recipients', 'size', 'client_ip'],
  released: ['scan'],
  verdict: ['level', 'score', 'engine', 'rules'],
  virus: ['name'],
  filter: ['filter', 'action', 'arg'],
  quarantine: ['quarantine', 'quarantines', 'verdict', 'score', 'where', 'reason', 'host', 'reply', 'rcpts'],
  delivery: ['status', 'rcpt', 'rcpts', 'route', 'host', 'attempt', 'reply'],
  bounce: ['rcpts', 'reply'],
  reply: ['reply'],
  release: ['recipients', 'changed', 'by'],
  delete: ['recipients', 'changed', 'by'],
  expire: ['quarantine', 'recipients'],
};
// Detail values with a translation (tr.v.<key>.<value>); others are shown as sent.
const ENUM_KEYS = ['status', 'level', 'hat_decision', 'where', 'scan', 'verdict'];
// Values from the wire, set in a monospaced face.
const CODE_KEYS = ['reply', 'host', 'client_ip', 'helo', 'tls_version'];

// t(key), or fallback when no language has the key.
function tOr(key, fallback) {
  const s = t(key);
  return s === key ? fallback : s;
}

export function trackingPath(id) {
  return '/tracking/message' + query({ id });
}

function follow(path) {
  return (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    ev.stopPropagation();
    navigate(path);
  };
}

function stateBadge(s) {
  if (!s) return h('span.muted', '—');
  const cls = Object.prototype.hasOwnProperty.call(STATE_CLASS, s) ? STATE_CLASS[s] : 'unknown';
  return h('span.badge.badge-' + cls, { 'data-state': s }, tOr('tr.state.' + s, s));
}

// "" is the null sender (bounces); null: the message's received event has not come.
function senderText(s) {
  if (s === null || s === undefined) return '—';
  return s === '' ? t('tr.null_sender') : s;
}

function subjectText(s) {
  if (s === null || s === undefined) return t('tr.no_subject_yet');
  return s === '' ? t('list.no_subject') : s;
}

// The text of an API refusal: its own message (the 400s say which parameter).
function failureText(e) {
  if (e instanceof ApiError && e.status === 0) return t('error.network');
  return e && e.message ? e.message : String(e);
}

function forbiddenBox(e) {
  return h('div.tr-forbidden', { role: 'alert', 'data-test': 'tracking-forbidden' },
    h('p', t('tr.forbidden')),
    h('p.muted', t('tr.server_said', { status: e.status, message: failureText(e) })));
}

function currentFilter() {
  const q = new URLSearchParams(location.search);
  const f = {};
  for (const k of FILTERS) {
    const v = q.get(k);
    if (v) f[k] = v;
  }
  return f;
}

function searchForm(filter) {
  const field = (name, input, hint) => h('label.field.field-compact', { for: 'tr-' + name },
    h('span.field-label', t('tr.f.' + name)), input, hint ? h('span.field-hint', hint) : null);
  const text = (name, props = {}) => h('input.input', {
    id: 'tr-' + name, name, value: filter[name] || '', autocomplete: 'off', spellcheck: 'false', 'data-test': 'tr-' + name, ...props,
  });
  const dt = (name) => h('input.input', { id: 'tr-' + name, name, type: 'datetime-local', step: 1, value: isoToLocalInput(filter[name]), 'data-test': 'tr-' + name });
  const subject = h('input.input.search-input', {
    id: 'tr-subject', name: 'subject', type: 'search', value: filter.subject || '', autocomplete: 'off',
    placeholder: t('tr.subject_placeholder'), 'aria-label': t('tr.f.subject'), 'data-test': 'tr-subject',
  });
  const op = h('select.input.input-op', { id: 'tr-subject_op', name: 'subject_op', 'aria-label': t('tr.f.subject_op'), 'data-test': 'tr-subject_op' },
    SUBJECT_OPS.map((o) => h('option', { value: o, selected: (filter.subject_op || 'contains') === o }, t('tr.op.' + o))));
  const chosen = new Set((filter.event || '').split(',').filter(Boolean));
  const events = h('fieldset.tr-events', { 'data-test': 'tr-events' },
    h('legend.field-label', t('tr.f.event')),
    h('div.tr-event-list', EVENT_FLAGS.map((f) => h('label.check', { for: 'tr-ev-' + f },
      h('input', { type: 'checkbox', id: 'tr-ev-' + f, name: 'event', value: f, checked: chosen.has(f), 'data-event': f }),
      ' ', t('tr.flag.' + f)))),
    h('span.field-hint', t('tr.event_hint')));
  const gatewayList = h('datalist', { id: 'tr-gateways' });
  const form = h('form.search.tr-search', {
    role: 'search', 'data-test': 'tracking-form', novalidate: true,
    on: {
      submit: (ev) => {
        ev.preventDefault();
        const data = new FormData(form);
        const f = {};
        for (const k of ['since', 'until']) {
          const v = localInputToIso(String(data.get(k) || '').trim());
          if (v) f[k] = v;
        }
        const s = String(data.get('subject') || '');
        if (s.trim()) {
          f.subject = s; // spaces count in "begins" and "is"
          if (data.get('subject_op') !== 'contains') f.subject_op = String(data.get('subject_op'));
        }
        for (const k of TEXT_FILTERS) {
          const v = String(data.get(k) || '').trim();
          if (v) f[k] = v;
        }
        const ev2 = data.getAll('event').map(String);
        if (ev2.length) f.event = ev2.join(',');
        navigate('/tracking' + query(f));
      },
    },
  },
  h('div.search-row', subject, op,
    h('button.btn.btn-primary', { type: 'submit', 'data-test': 'tracking-submit' }, t('search.submit')),
    h('button.btn', { type: 'button', 'data-test': 'tracking-clear', on: { click: () => navigate('/tracking') } }, t('search.clear'))),
  h('div.filter-grid',
    field('since', dt('since')),
    field('until', dt('until')),
    field('sender', text('sender'), t('tr.sender_hint')),
    field('recipient', text('recipient'), t('tr.recipient_hint')),
    field('message_id', text('message_id')),
    field('gateway', text('gateway', { list: 'tr-gateways' })),
    field('client_ip', text('client_ip')),
    field('attachment', text('attachment'))),
  events, gatewayList);
  // The registry's names for the gateway field (and the manager's own events).
  api('GET', '/api/v1/gateways').then((doc) => {
    const names = ((doc && doc.gateways) || []).filter((g) => g.state !== 'pending').map((g) => g.name);
    for (const n of [...names, 'manager']) gatewayList.append(h('option', { value: n }));
  }).catch(() => {});
  return { form, subject };
}

export function renderTracking(main) {
  const filter = currentFilter();
  const state = { next: null, count: 0, built: false };
  const errorBox = h('p.form-error', { role: 'alert', 'data-test': 'tracking-error', hidden: true });
  const tbody = h('tbody');
  const table = h('table.plain-table.tr-table', { 'data-test': 'tracking' },
    h('thead', h('tr',
      h('th', t('tr.col.received')), h('th', t('tr.col.gateway')), h('th', t('tr.col.sender')),
      h('th', t('tr.col.recipients')), h('th', t('tr.col.subject')), h('th', t('tr.col.state')))),
    tbody);
  const count = h('span.muted.toolbar-info', { 'data-test': 'tracking-count' });
  const more = h('button.btn', { type: 'button', 'data-test': 'tracking-more', hidden: true, on: { click: () => load(true) } }, t('tr.more'));
  const body = h('div', h('p.muted', t('list.loading')));
  main.append(h('h1.page-title', t('tr.title')), body);

  let subjectInput = null;
  function build() {
    if (state.built) return;
    state.built = true;
    const { form, subject } = searchForm(filter);
    subjectInput = subject;
    clear(body).append(h('p.muted.tr-intro', t('tr.intro')), form, errorBox,
      h('div.table-wrap', table), h('div.tr-more', count, more));
  }

  function showError(e) {
    build();
    errorBox.textContent = e instanceof ApiError && e.status === 400
      ? t('tr.bad_search', { message: failureText(e) })
      : t('error.generic', { message: failureText(e) });
    errorBox.hidden = false;
  }

  function row(m) {
    const path = trackingPath(m.id);
    const rcpts = m.recipients || [];
    return h('tr.msg-row', {
      'data-id': m.id, 'data-gateway': m.gateway,
      on: { click: (ev) => { if (!ev.target.closest('a')) navigate(path); } },
    },
    h('td.col-date', h('time', { datetime: m.received_at }, formatDate(m.received_at, { seconds: true }))),
    h('td', h('span.gw-tag', m.gateway)),
    h('td.tr-col-addr', h('div.cell-main', { title: senderText(m.sender) }, senderText(m.sender))),
    h('td.tr-col-addr', rcpts.slice(0, 3).map((r) => h('div.cell-main', { title: r }, r)),
      rcpts.length > 3 ? h('div.cell-sub', t('tr.more_rcpts', { n: rcpts.length - 3 })) : null),
    h('td.col-subject', h('a.subject-link', { href: path, title: m.subject || '', 'data-test': 'tracking-subject', on: { click: follow(path) } },
      subjectText(m.subject))),
    h('td', stateBadge(m.last_state)));
  }

  async function load(append) {
    more.disabled = true;
    try {
      const cursor = append ? state.next : null;
      const doc = await api('GET', '/api/v1/tracking/messages' + query({ limit: PAGE_SIZE, ...filter, cursor }));
      build();
      errorBox.hidden = true;
      const list = (doc && doc.messages) || [];
      if (!append) {
        clear(tbody);
        state.count = 0;
        if (!list.length) tbody.append(h('tr', h('td.empty', { colspan: 6, 'data-test': 'tracking-empty' }, t('tr.empty'))));
      }
      for (const m of list) tbody.append(row(m));
      state.count += list.length;
      state.next = doc && doc.next_cursor ? doc.next_cursor : null;
      count.textContent = state.count ? t('list.count', { n: state.count }) : '';
      more.hidden = !state.next;
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) {
        clear(body).append(forbiddenBox(e));
        return;
      }
      showError(e);
      if (!append) {
        clear(tbody).append(h('tr', h('td.empty', { colspan: 6 }, t('tr.no_results'))));
        count.textContent = '';
        more.hidden = true;
      }
    } finally {
      more.disabled = false;
    }
  }

  // The server decides; for admins the form is there at once.
  if (isAdmin()) build();
  load(false);

  function onKey(ev) {
    if (ev.key !== '/' || ev.ctrlKey || ev.metaKey || ev.altKey || !subjectInput) return;
    const tag = ev.target && ev.target.tagName;
    if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') return;
    ev.preventDefault();
    subjectInput.focus();
    subjectInput.select();
  }
  document.addEventListener('keydown', onKey);
  return () => document.removeEventListener('keydown', onKey);
}

// ---- one message's story ----

function kv(label, value, test) {
  const empty = value === undefined || value === null || value === '';
  return [h('dt', label), h('dd', { 'data-test': test || null }, empty ? '—' : value)];
}

function fieldValue(key, v) {
  if (v === null || v === undefined || v === '') return null;
  if (key === 'sender' && typeof v === 'string') return senderText(v);
  if (key === 'size' && typeof v === 'number') return formatBytes(v);
  if (key === 'score' && typeof v === 'number') return formatNumber(v, 2);
  if (key === 'quarantines' && Array.isArray(v)) {
    return v.map((q) => (q && typeof q === 'object'
      ? String(q.name) + (q.reason ? ' (' + String(q.reason) + ')' : '') : String(q))).join(', ');
  }
  if (ENUM_KEYS.includes(key) && typeof v === 'string') return tOr('tr.v.' + key + '.' + v, v);
  if (typeof v === 'boolean') return t(v ? 'tr.yes' : 'tr.no');
  if (Array.isArray(v)) {
    if (!v.length) return null;
    return v.map((x) => (x !== null && typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ');
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function eventFields(e) {
  const d = e.detail && typeof e.detail === 'object' ? e.detail : {};
  let keys = EVENT_FIELDS[e.type];
  if (!keys) keys = Object.keys(d).filter((k) => k !== 'session' && d[k] !== null && typeof d[k] !== 'object').slice(0, 6);
  const items = [];
  for (const k of keys) {
    const v = fieldValue(k, d[k]);
    if (v === null) continue;
    items.push(h('div.ev-field', { 'data-field': k },
      h('span.ev-key', tOr('tr.d.' + k, k)),
      CODE_KEYS.includes(k) ? h('code.ev-value', v) : h('span.ev-value', v)));
  }
  return items;
}

function gatewayTag(name, index) {
  return h('span.gw-tag.gw-c' + (index % 6), name);
}

function timeline(m) {
  const events = m.events || [];
  const order = [];
  for (const e of events) if (!order.includes(e.gateway)) order.push(e.gateway);
  const rows = events.map((e, i) => {
    const other = e.message && e.message !== m.id;
    return h('tr', { 'data-gateway': e.gateway, 'data-type': e.type, 'data-test': 'tl-event', class: other ? 'tl-other' : null },
      h('td.col-date.tl-time', h('time', { datetime: e.at }, formatDate(e.at, { seconds: true }))),
      h('td.tl-gw', gatewayTag(e.gateway, order.indexOf(e.gateway)),
        other ? h('div.cell-sub', h('a', { href: trackingPath(e.message), 'data-test': 'tl-other-link', on: { click: follow(trackingPath(e.message)) } }, t('tr.its_story'))) : null),
      h('td.tl-type', h('span.ev-type', { 'data-test': 'tl-type' }, tOr('tr.ev.' + e.type, e.type)),
        e.message ? null : h('div.cell-sub', t('tr.session_event'))),
      h('td.tl-detail', h('div.ev-fields', eventFields(e)),
        h('details.ev-raw', h('summary', t('tr.all_fields')),
          h('pre.ev-json', { id: 'ev-json-' + i }, JSON.stringify(e.detail, null, 2)))));
  });
  return h('section.tr-section', { 'aria-labelledby': 'tl-title' },
    h('h2.section-title', { id: 'tl-title' }, t('tr.timeline')),
    h('p.muted.tl-note', { 'data-test': 'tl-gateways' },
      t('tr.timeline_note', { n: order.length }), ' ', order.map((g, i) => [gatewayTag(g, i), ' '])),
    events.length
      ? h('div.table-wrap', h('table.plain-table.timeline', { 'data-test': 'timeline' },
        h('thead', h('tr', h('th', t('tr.tl.time')), h('th', t('tr.tl.gateway')), h('th', t('tr.tl.type')), h('th', t('tr.tl.detail')))),
        h('tbody', rows)))
      : h('p.muted', t('tr.no_events')));
}

export function renderTrackingMessage(main, id) {
  const box = h('div.detail', h('p.muted', t('list.loading')));
  main.append(h('a.back', {
    href: '/tracking',
    on: { click: (ev) => { ev.preventDefault(); history.length > 1 ? history.back() : navigate('/tracking'); } },
  }, t('tr.back')), box);

  function show(m) {
    clear(box);
    document.title = subjectText(m.subject) + ' — ' + t('product');
    const hd = m.headers;
    const rcpts = m.recipients || [];
    const atts = m.attachments || [];
    const section = (key, ...content) => h('section.tr-section', { 'aria-labelledby': 'tr-' + key, 'data-test': 'tr-' + key },
      h('h2.section-title', { id: 'tr-' + key }, t('tr.s.' + key)), ...content);
    const searchMid = m.message_id ? '/tracking' + query({ message_id: m.message_id }) : null;
    box.append(
      h('div.detail-head',
        h('h1.detail-subject', { 'data-test': 'tracking-detail-subject' }, subjectText(m.subject)),
        h('div.detail-actions', stateBadge(m.last_state))),
      h('div.tr-grid',
        section('envelope', h('dl.meta',
          kv(t('tr.e.id'), h('code', m.id)),
          kv(t('tr.e.gateway'), h('span.gw-tag', m.gateway)),
          kv(t('tr.e.received'), formatDate(m.received_at, { seconds: true })),
          kv(t('tr.e.sender'), senderText(m.sender), 'tr-sender'),
          kv(t('tr.e.recipients'), rcpts.length ? h('ul.rcpt-list', rcpts.map((r) => h('li', r))) : null, 'tr-recipients'),
          kv(t('tr.e.size'), m.size ? formatBytes(m.size) : null),
          kv(t('tr.e.message_id'), m.message_id ? [h('code', m.message_id), ' ',
            h('a', { href: searchMid, 'data-test': 'tr-search-mid', on: { click: follow(searchMid) } }, t('tr.search_mid'))] : null),
          kv(t('tr.e.state'), stateBadge(m.last_state)))),
        section('headers', hd ? h('dl.meta',
          kv(t('tr.h.from'), hd.from, 'tr-h-from'),
          kv(t('tr.h.to'), hd.to, 'tr-h-to'),
          kv(t('tr.h.cc'), hd.cc),
          kv(t('tr.h.subject'), hd.subject, 'tr-h-subject'),
          kv(t('tr.h.date'), hd.date ? formatDate(hd.date, { seconds: true }) : null),
          kv(t('tr.h.message_id'), hd.message_id ? h('code', hd.message_id) : null))
          : h('p.muted', t('tr.no_headers'))),
        section('host', h('dl.meta',
          kv(t('tr.host.helo'), m.helo ? h('code', m.helo) : null, 'tr-helo'),
          kv(t('tr.host.client_ip'), m.client_ip ? h('code', m.client_ip) : null, 'tr-client-ip'))),
        section('attachments', atts.length
          ? h('ul.tr-atts', atts.map((a) => h('li', a)))
          : h('p.muted', t('detail.no_attachments')))),
      timeline(m));
  }

  (async () => {
    try {
      if (!id) throw new ApiError(404, 'not_found', 'no such tracked message');
      show(await api('GET', '/api/v1/tracking/messages/' + encodeURIComponent(id)));
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) clear(box).append(forbiddenBox(e));
      else if (e instanceof ApiError && e.status === 404) clear(box).append(h('p.empty', { 'data-test': 'tracking-not-found' }, t('tr.not_found')));
      else clear(box).append(h('p.empty.error', failureText(e)));
    }
  })();

  function onKey(ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const tag = ev.target && ev.target.tagName;
    if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') return;
    if (ev.key === 'Escape' || ev.key === 'u') { ev.preventDefault(); history.length > 1 ? history.back() : navigate('/tracking'); }
  }
  document.addEventListener('keydown', onKey);
  return () => document.removeEventListener('keydown', onKey);
}
