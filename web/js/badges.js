// The small labels the message list and the message page both show: a
// recipient's state and the gateway's verdict, and the values they know.

import { h } from './dom.js';
import { t } from './i18n.js';

export const STATES = ['quarantined', 'releasing', 'released', 'deleted', 'expired', 'failed'];
export const VERDICTS = ['spam', 'suspect', 'virus', 'policy'];

export function stateBadge(state) {
  return h('span.badge.badge-' + (STATES.includes(state) ? state : 'unknown'), { 'data-state': state }, t('state.' + state));
}

export function verdictBadge(verdict) {
  if (verdict === null || verdict === undefined) return null;
  return h('span.verdict.verdict-' + (VERDICTS.includes(verdict) ? verdict : 'other'), t('verdict.' + verdict));
}

// A message's state in one PVO quarantine.
export const MEMBERSHIP_STATES = ['held', 'released', 'deleted', 'expired'];

export function membershipBadge(state) {
  const cls = { held: 'quarantined', released: 'released', deleted: 'deleted', expired: 'expired' }[state] || 'unknown';
  return h('span.badge.badge-' + cls, { 'data-state': state }, MEMBERSHIP_STATES.includes(state) ? t('mstate.' + state) : state);
}
