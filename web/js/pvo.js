// Actions on messages held in policy, virus and outbreak (PVO) quarantines, for the
// message page and the list: release from one quarantine, delete from it, delay its
// exit, move it to another policy quarantine, send a copy (admins). Each is
// confirmed in a dialog first; the API's own error text is shown when it fails.
//
//   POST /api/v1/messages/{id}/release {"quarantine"}      …/delete {"quarantine"}
//   POST /api/v1/messages/{id}/delay {"quarantine","by"}   …/move {"from","to"}
//   POST /api/v1/messages/{id}/copy {"to":[addresses]}
// and, for every message a list's filter matches, the bulk routes (pvoMatching).

import { api } from './api.js';
import { h, modal } from './dom.js';
import { t } from './i18n.js';
import { isAdmin } from './session.js';

export const PVO_TYPES = ['policy', 'virus', 'outbreak', 'unclassified'];
export const ACTIONS = ['release', 'delete', 'delay', 'move', 'copy'];
const DELAYS = ['1d', '3d', '7d'];

// The actions the signed-in user may take: copies are for admins only.
export function allowedActions() {
  return ACTIONS.filter((a) => a !== 'copy' || isAdmin());
}

export function isPvoType(type) {
  return PVO_TYPES.includes(type);
}

export function typeLabel(type) {
  return type === 'spam' || isPvoType(type) ? t('qtype.' + type) : type || '';
}

// The text of a failed request: the API's error message, or why it was not reached.
export function failureText(e) {
  if (e && e.status === 0) return t('error.network');
  return (e && e.message) || String(e);
}

// One action on one message.
export function pvoAction(id, action, body) {
  return api('POST', '/api/v1/messages/' + encodeURIComponent(id) + '/' + action, body);
}

// The same action on a chosen set of messages: {done, failed, errors: [{id, error}]},
// one request per message, so that each one's outcome is known.
export async function pvoBulk(ids, action, body) {
  const out = { done: 0, failed: 0, errors: [] };
  for (const id of ids) {
    try {
      await pvoAction(id, action, body);
      out.done++;
    } catch (e) {
      out.failed++;
      out.errors.push({ id, error: e });
    }
  }
  return out;
}

// An action on every message of the quarantine q that the filter matches, in one
// request to the bulk route: {changed, queued}. filter: the list's filter (its
// quarantine is q); body: what askAction read. Copies have no bulk route.
//
//   POST /api/v1/messages/release|delete {"filter": {"quarantine", ...}}
//   POST /api/v1/messages/delay {"filter": {"quarantine", ...}, "by"}
//   POST /api/v1/messages/move {"filter": {...}, "from", "to"}
export function pvoMatching(action, q, filter, body) {
  const f = { ...filter, quarantine: q };
  if (action === 'release' || action === 'delete') return api('POST', '/api/v1/messages/' + action, { filter: f });
  if (action === 'delay') return api('POST', '/api/v1/messages/delay', { filter: f, by: body.by });
  if (action === 'move') {
    delete f.quarantine; // the quarantine left is "from"
    const req = { from: q, to: body.to };
    if (Object.keys(f).length) req.filter = f;
    return api('POST', '/api/v1/messages/move', req);
  }
  throw new Error('no bulk route for ' + action);
}

export function hasBulkRoute(action) {
  return action !== 'copy';
}

function lines(text) {
  return text.split(/[\s,;]+/).map((s) => s.trim()).filter(Boolean);
}

// Asks for confirmation (and the action's parameters) in a dialog. target: the
// words for what is acted on (t('pvo.this'), ...); quarantine: the one acted in;
// moveTargets: the names of the other policy quarantines; noRescan: a release that
// the gateway does not rescan ({"rescan": false}, admins). Resolves to the request
// body, or null when cancelled.
export async function askAction(action, { target, quarantine, moveTargets = [], noRescan = false }) {
  const q = quarantine;
  const body = [];
  let read = () => ({ quarantine: q });
  if (action === 'release' && noRescan) {
    body.push(h('p', t('pvo.confirm_release_norescan', { target, q })));
    read = () => ({ quarantine: q, rescan: false });
  } else if (action === 'release' || action === 'delete') {
    body.push(h('p', t('pvo.confirm_' + action, { target, q })));
  } else if (action === 'delay') {
    const other = h('input.input.input-short', {
      id: 'pvo-delay-other', type: 'text', pattern: '[0-9]{1,5}[smhd]', autocomplete: 'off',
      placeholder: t('pvo.delay_hint'), 'aria-label': t('pvo.delay_other'), 'data-test': 'delay-other',
    });
    const radios = DELAYS.map((d, i) => h('label.check', { for: 'pvo-delay-' + d },
      h('input', { type: 'radio', name: 'pvo-delay', id: 'pvo-delay-' + d, value: d, checked: i === 0, 'data-test': 'delay-' + d, 'data-autofocus': i === 0 ? '' : null }),
      ' ', t('pvo.delay_' + d)));
    const otherRadio = h('input', { type: 'radio', name: 'pvo-delay', id: 'pvo-delay-other-choice', value: '', 'data-test': 'delay-other-choice' });
    otherRadio.addEventListener('change', () => { other.required = otherRadio.checked; if (otherRadio.checked) other.focus(); });
    other.addEventListener('input', () => { otherRadio.checked = true; other.required = true; });
    for (const r of radios) r.querySelector('input').addEventListener('change', () => { other.required = false; });
    body.push(h('p', t('pvo.confirm_delay', { target, q })),
      h('fieldset.choices', h('legend.sr-only', t('pvo.name.delay')), radios,
        h('div.check', otherRadio, h('label', { for: 'pvo-delay-other-choice' }, t('pvo.delay_other')), other)));
    read = () => {
      const picked = radios.map((l) => l.querySelector('input')).find((r) => r.checked);
      return { quarantine: q, by: picked ? picked.value : other.value.trim() };
    };
  } else if (action === 'move') {
    if (!moveTargets.length) {
      await modal({ title: t('pvo.move_title'), body: [h('p', t('pvo.move_none'))], confirm: t('action.ok'), cancel: t('action.cancel') });
      return null;
    }
    const to = h('select.input', { id: 'pvo-move-to', required: true, 'data-test': 'move-to', 'data-autofocus': '' },
      moveTargets.map((n) => h('option', { value: n }, n)));
    body.push(h('p', t('pvo.confirm_move', { target, q })),
      h('label.field', { for: 'pvo-move-to' }, h('span.field-label', t('pvo.move_to')), to),
      h('p.muted', t('pvo.move_keeps')));
    read = () => ({ from: q, to: to.value });
  } else if (action === 'copy') {
    const to = h('textarea.input.mono', { id: 'pvo-copy-to', rows: 3, required: true, spellcheck: 'false', 'data-test': 'copy-to', 'data-autofocus': '' });
    body.push(h('p', t('pvo.confirm_copy', { target })),
      h('label.field', { for: 'pvo-copy-to' }, h('span.field-label', t('pvo.copy_to')), to));
    read = () => ({ to: lines(to.value) });
  }
  const ok = await modal({
    title: t(noRescan ? 'pvo.release_norescan' : 'pvo.' + action + '_title'),
    body,
    confirm: t(noRescan ? 'pvo.release_norescan' : 'pvo.name.' + action),
    cancel: t('action.cancel'),
    danger: action === 'delete',
  });
  return ok ? read() : null;
}
