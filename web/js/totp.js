// Pieces of the second factor's pages (sign-in and settings): the enrolment QR
// code drawn from the server's SVG, the manual key, and the recovery codes.

import { h } from './dom.js';
import { t } from './i18n.js';

const SVG = 'http://www.w3.org/2000/svg';

// The QR code of an enrolment (qr_svg). Only its size and the path of its dark
// modules are taken (numbers and M/h/v/z): the page never parses server markup,
// and the policy (default-src 'self') allows no data: image.
export function qrImage(svgText) {
  const box = (/viewBox="0 0 (\d+) (\d+)"/.exec(svgText || '') || []).slice(1).map(Number);
  const path = (/<path[^>]* d="([Mhvz0-9 -]*)"/.exec(svgText || '') || [])[1];
  if (box.length !== 2 || path === undefined) return h('p.form-error', t('totp.no_qr'));
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${box[0]} ${box[1]}`);
  svg.setAttribute('width', '200');
  svg.setAttribute('height', '200');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', t('totp.qr_label'));
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('class', 'totp-qr');
  svg.setAttribute('data-test', 'totp-qr');
  const bg = document.createElementNS(SVG, 'rect');
  bg.setAttribute('width', String(box[0]));
  bg.setAttribute('height', String(box[1]));
  bg.setAttribute('fill', '#fff');
  const dark = document.createElementNS(SVG, 'path');
  dark.setAttribute('d', path);
  dark.setAttribute('fill', '#000');
  svg.append(bg, dark);
  return svg;
}

// The secret in groups of four, for typing into an app.
export function manualKey(secret) {
  return h('code.totp-secret', { 'data-test': 'totp-secret', 'data-secret': secret },
    secret.replace(/(.{4})(?=.)/g, '$1 '));
}

// The enrolment: QR code, manual key, and how to use them.
export function enrolment(doc) {
  return h('div.totp-enrol',
    qrImage(doc.qr_svg),
    h('div.totp-enrol-text',
      h('p', t('totp.scan')),
      h('p.muted', t('totp.manual')),
      manualKey(doc.secret)));
}

// The recovery codes, shown once.
export function recoveryCodes(codes) {
  return h('div.totp-recovery', { 'data-test': 'recovery-codes' },
    h('p', h('strong', t('totp.codes_once'))),
    h('ol.totp-codes.mono', codes.map((c) => h('li', c))));
}

// The code input (6 digits or a recovery code).
export function codeInput(id, test) {
  return h('input.input.mono', {
    id, name: 'code', 'data-test': test, autocomplete: 'one-time-code', required: true,
    maxlength: 64, spellcheck: 'false', autocapitalize: 'off',
  });
}
