// The sign-in page: username and password against POST /api/v1/session.

import { api } from './api.js';
import { h } from './dom.js';
import { t } from './i18n.js';
import { signedIn, navigate } from './session.js';

export function renderLogin(main) {
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
          await signedIn(doc);
          const next = new URLSearchParams(location.search).get('next');
          navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : '/messages', { replace: true });
        } catch (e) {
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
  main.classList.add('main-center');
  main.append(h('div.login-card', form));
  user.focus();
}
