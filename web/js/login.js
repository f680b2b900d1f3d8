// The sign-in page: username and password against POST /api/v1/session, then,
// for an account with a second factor, its code (POST /api/v1/session/totp); for
// a role that must have one and has none, its enrolment first
// (POST /api/v1/session/totp/enrol, then the code), whose recovery codes are
// shown once before going on.

import { api } from './api.js';
import { h, clear } from './dom.js';
import { t } from './i18n.js';
import { session, signedIn, navigate } from './session.js';
import { enrolment, recoveryCodes, codeInput } from './totp.js';

const SECOND = { second_factor_required: 'totp', second_factor_enrolment_required: 'enrol' };

async function finish(doc) {
  session.pending = null;
  await signedIn(doc);
  const next = new URLSearchParams(location.search).get('next');
  navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/messages', { replace: true });
}

function again(main) {
  clear(main);
  renderLogin(main);
}

function startOver(main) {
  return h('button.btn.btn-block.login-alt', {
    type: 'button', 'data-test': 'login-start-over',
    on: { click: () => { session.pending = null; again(main); } },
  }, t('login.start_over'));
}

function codeError(e) {
  if (e.status === 401 && e.message === 'no login is waiting for a second factor') return t('login.expired');
  if (e.status === 401) return t('login.code_failed');
  if (e.status === 429) return t('login.limited');
  return t('error.generic', { message: e.message });
}

// The second step: the code of the authenticator app, or a recovery code.
function renderCode(main) {
  const code = codeInput('login-code', 'login-code');
  const error = h('p.form-error', { role: 'alert', 'data-test': 'login-error', hidden: true });
  const submit = h('button.btn.btn-primary.btn-block', { type: 'submit', 'data-test': 'login-code-submit' }, t('login.verify'));
  const form = h('form.login-form', {
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        error.hidden = true;
        submit.disabled = true;
        try {
          await finish(await api('POST', '/api/v1/session/totp', { code: code.value.trim() }, { quiet401: true }));
        } catch (e) {
          error.textContent = codeError(e);
          error.hidden = false;
          submit.disabled = false;
          code.select();
        }
      },
    },
  },
  h('h1.login-title', t('login.code_title')),
  h('p.muted', t('login.code_intro')),
  h('label.field', { for: 'login-code' }, h('span.field-label', t('login.code')), code),
  error,
  submit,
  startOver(main));
  main.append(h('div.login-card', form));
  code.focus();
}

// A role that must have a second factor: enrol it, confirm with a code, keep the
// recovery codes, go on.
function renderEnrol(main) {
  const card = h('div.login-card', { 'data-test': 'login-enrol' },
    h('h1.login-title', t('login.enrol_title')),
    h('p.muted', t('login.enrol_intro')));
  main.append(card);
  const error = h('p.form-error', { role: 'alert', 'data-test': 'login-error', hidden: true });
  api('POST', '/api/v1/session/totp/enrol', undefined, { quiet401: true }).then((doc) => {
    const code = codeInput('login-code', 'login-code');
    const submit = h('button.btn.btn-primary.btn-block', { type: 'submit', 'data-test': 'login-code-submit' }, t('totp.confirm'));
    const form = h('form.login-form', {
      on: {
        submit: async (ev) => {
          ev.preventDefault();
          error.hidden = true;
          submit.disabled = true;
          try {
            const done = await api('POST', '/api/v1/session/totp', { code: code.value.trim() }, { quiet401: true });
            clear(card);
            card.append(h('h1.login-title', t('totp.enrolled_title')), recoveryCodes(done.recovery_codes || []),
              h('button.btn.btn-primary.btn-block', { type: 'button', 'data-test': 'login-continue', on: { click: () => finish(done) } },
                t('login.continue')));
          } catch (e) {
            error.textContent = codeError(e);
            error.hidden = false;
            submit.disabled = false;
            code.select();
          }
        },
      },
    },
    enrolment(doc),
    h('label.field', { for: 'login-code' }, h('span.field-label', t('totp.code')), code),
    error,
    submit,
    startOver(main));
    card.append(form);
    code.focus();
  }).catch((e) => {
    error.textContent = codeError(e);
    error.hidden = false;
    card.append(error, startOver(main));
  });
}

export function renderLogin(main) {
  main.classList.add('main-center');
  if (session.pending === 'totp') return renderCode(main);
  if (session.pending === 'enrol') return renderEnrol(main);
  const user = h('input.input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const pass = h('input.input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p.form-error', { role: 'alert', 'data-test': 'login-error', hidden: true });
  const submit = h('button.btn.btn-primary.btn-block', { type: 'submit', 'data-test': 'login-submit' }, t('login.submit'));
  const form = h('form.login-form', {
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        error.hidden = true;
        submit.disabled = true;
        submit.textContent = t('login.busy');
        try {
          const doc = await api('POST', '/api/v1/session', { username: user.value.trim(), password: pass.value }, { quiet401: true });
          await finish(doc);
        } catch (e) {
          if (e.status === 401 && SECOND[e.code]) {
            session.pending = SECOND[e.code];
            again(main);
            return;
          }
          error.textContent = e.status === 401 || e.status === 403 ? t('login.failed')
            : e.status === 404 || e.status === 405 ? t('login.unavailable') : t('error.generic', { message: e.message });
          error.hidden = false;
          submit.disabled = false;
          submit.textContent = t('login.submit');
          pass.select();
        }
      },
    },
  },
  h('h1.login-title', t('login.title')),
  h('p.muted', t('login.intro')),
  h('label.field', { for: 'login-username' }, h('span.field-label', t('login.username')), user),
  h('label.field', { for: 'login-password' }, h('span.field-label', t('login.password')), pass),
  error,
  submit);
  const card = h('div.login-card', form);
  main.append(card);
  user.focus();
  ssoButton(form);
  // With [auth_saml] the manager serves its SP metadata: offer the provider's sign-in.
  fetch('/auth/saml/metadata', { method: 'HEAD', credentials: 'same-origin' }).then((r) => {
    if (r.ok) card.append(h('a.btn.btn-block.login-alt', { href: '/auth/saml/login', 'data-test': 'login-saml' }, t('login.saml')));
  }).catch(() => {});
  return undefined;
}

// Single sign-on: a button to the provider's login when the server has one
// (GET /api/v1/session/oidc answers 404 when [auth_oidc] is not configured).
async function ssoButton(form) {
  let doc;
  try {
    doc = await api('GET', '/api/v1/session/oidc', undefined, { quiet401: true });
  } catch (e) {
    return;
  }
  if (!doc || typeof doc.login_url !== 'string' || !doc.login_url.startsWith('/') || doc.login_url.startsWith('//')) return;
  form.append(h('p.login-or.muted', t('login.or')),
    h('a.btn.btn-block.login-alt', { href: doc.login_url, 'data-test': 'login-oidc' }, t('login.oidc')));
}
