// The user's own settings: language and time zone (PUT /api/v1/me), the second
// factor (/api/v1/me/totp: enrol with a QR code, keep the recovery codes, turn it
// off), and for end users their safelist and blocklist (GET/PUT /api/v1/me/slbl).

import { api } from './api.js';
import { h, clear } from './dom.js';
import { t, formatDate, LANGUAGES, language, browserTimeZone, rememberLanguage, setTimeZone } from './i18n.js';
import { session, route, notify, notifyError, errorText } from './session.js';
import { enrolment, recoveryCodes, codeInput } from './totp.js';

function zones() {
  try {
    return Intl.supportedValuesOf('timeZone');
  } catch {
    return ['UTC', 'Asia/Tokyo', 'Europe/London', 'America/New_York'];
  }
}

function lines(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

export function renderSettings(main) {
  const u = session.user;
  const lang = h('select.input', { id: 's-lang', 'data-test': 'settings-language' },
    LANGUAGES.map(([code, name]) => h('option', { value: code, selected: code === language() }, name)));
  const tz = h('select.input', { id: 's-tz', 'data-test': 'settings-time-zone' },
    h('option', { value: '' }, t('settings.browser_tz', { tz: browserTimeZone() })),
    zones().map((z) => h('option', { value: z, selected: u && u.time_zone === z }, z)));
  const prefs = h('form.card-form', {
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        try {
          await api('PUT', '/api/v1/me', { language: lang.value, time_zone: tz.value });
          if (u) { u.language = lang.value; u.time_zone = tz.value; }
          rememberLanguage(lang.value);
          setTimeZone(tz.value);
          route();
          notify(t('done.saved'));
        } catch (e) {
          notifyError(e);
        }
      },
    },
  },
  h('h2.section-title', t('settings.prefs')),
  h('div.form-grid',
    h('label.field', { for: 's-lang' }, h('span.field-label', t('settings.language')), lang),
    h('label.field', { for: 's-tz' }, h('span.field-label', t('settings.time_zone')), tz)),
  h('div.form-actions', h('button.btn.btn-primary', { type: 'submit', 'data-test': 'save-prefs' }, t('action.save'))));

  main.append(h('h1.page-title', t('settings.title')), prefs);
  main.append(totpSection());

  if (u && u.role === 'enduser') {
    const safe = h('textarea.input.mono', { id: 's-safe', rows: 8, 'data-test': 'safelist', spellcheck: 'false' });
    const block = h('textarea.input.mono', { id: 's-block', rows: 8, 'data-test': 'blocklist', spellcheck: 'false' });
    const save = h('button.btn.btn-primary', { type: 'submit', 'data-test': 'save-slbl', disabled: true }, t('action.save'));
    const form = h('form.card-form', {
      on: {
        submit: async (ev) => {
          ev.preventDefault();
          try {
            const doc = await api('PUT', '/api/v1/me/slbl', { safelist: lines(safe.value), blocklist: lines(block.value) });
            if (doc && Array.isArray(doc.safelist)) safe.value = doc.safelist.join('\n');
            if (doc && Array.isArray(doc.blocklist)) block.value = doc.blocklist.join('\n');
            notify(t('done.saved'));
          } catch (e) {
            notifyError(e);
          }
        },
      },
    },
    h('h2.section-title', t('settings.slbl')),
    h('p.muted', t('settings.slbl_intro')),
    h('div.form-grid',
      h('label.field', { for: 's-safe' }, h('span.field-label', t('settings.safelist')), safe),
      h('label.field', { for: 's-block' }, h('span.field-label', t('settings.blocklist')), block)),
    h('div.form-actions', save));
    main.append(form);
    api('GET', '/api/v1/me/slbl').then((doc) => {
      safe.value = (doc && doc.safelist || []).join('\n');
      block.value = (doc && doc.blocklist || []).join('\n');
      save.disabled = false;
    }).catch((e) => {
      form.append(h('p.form-error', e.status === 404 ? t('settings.slbl_unavailable') : e.message));
    });
  }
}

// The second factor: its state, enrolment (QR code, key, a code to confirm, the
// recovery codes once), and turning it off with a code or the password.
function totpSection() {
  const body = h('div');
  const section = h('section.card-form', { 'data-test': 'totp-section' },
    h('h2.section-title', t('totp.title')),
    h('p.muted', t('totp.intro')),
    body);

  function fail(e, where) {
    const text = e.status === 422 && /local accounts|logged-in/.test(e.message) ? t('totp.local_only')
      : e.status === 422 || e.status === 403 ? (/password/.test(e.message) ? t('totp.wrong_password') : t('totp.wrong_code'))
        : e.status === 429 ? t('login.limited') : errorText(e);
    where.textContent = text;
    where.hidden = false;
  }

  async function load() {
    clear(body);
    let st;
    try {
      st = await api('GET', '/api/v1/me/totp');
    } catch (e) {
      body.append(h('p.form-error', e.status === 422 ? t('totp.local_only') : errorText(e)));
      return;
    }
    if (st.enrolled) {
      const code = codeInput('s-totp-off-code', 'totp-off-code');
      const pass = h('input.input', { id: 's-totp-off-password', type: 'password', autocomplete: 'current-password', 'data-test': 'totp-off-password' });
      const error = h('p.form-error', { role: 'alert', 'data-test': 'totp-error', hidden: true });
      code.required = false;
      const off = h('form', {
        on: {
          submit: async (ev) => {
            ev.preventDefault();
            error.hidden = true;
            const proof = code.value.trim() ? { code: code.value.trim() } : { password: pass.value };
            try {
              await api('DELETE', '/api/v1/me/totp', proof);
              notify(t('totp.disabled'));
              load();
            } catch (e) {
              fail(e, error);
            }
          },
        },
      },
      h('p', h('strong', { 'data-test': 'totp-state' }, t('totp.on', { date: formatDate(st.enrolled_at) }))),
      h('p.muted', t('totp.codes_left', { n: st.recovery_codes_left })),
      st.required ? h('p.muted', t('totp.required')) : null,
      h('div.form-grid',
        h('label.field', { for: 's-totp-off-code' }, h('span.field-label', t('totp.code')), code),
        h('label.field', { for: 's-totp-off-password' }, h('span.field-label', t('totp.or_password')), pass)),
      error,
      h('div.form-actions', h('button.btn.btn-danger-outline', { type: 'submit', 'data-test': 'totp-disable' }, t('totp.disable'))));
      body.append(off);
      return;
    }
    const error = h('p.form-error', { role: 'alert', 'data-test': 'totp-error', hidden: true });
    body.append(
      h('p', h('strong', { 'data-test': 'totp-state' }, t('totp.off'))),
      st.required ? h('p.muted', t('totp.required')) : null,
      error,
      h('div.form-actions', h('button.btn.btn-primary', {
        type: 'button', 'data-test': 'totp-start',
        on: {
          click: async () => {
            try {
              begin(await api('POST', '/api/v1/me/totp'));
            } catch (e) {
              fail(e, error);
            }
          },
        },
      }, t('totp.start'))));
  }

  function begin(doc) {
    clear(body);
    const code = codeInput('s-totp-code', 'totp-code');
    const error = h('p.form-error', { role: 'alert', 'data-test': 'totp-error', hidden: true });
    const form = h('form', {
      on: {
        submit: async (ev) => {
          ev.preventDefault();
          error.hidden = true;
          try {
            const done = await api('POST', '/api/v1/me/totp/confirm', { code: code.value.trim() });
            clear(body);
            body.append(
              h('p', h('strong', { 'data-test': 'totp-state' }, t('totp.enrolled_title'))),
              recoveryCodes(done.recovery_codes || []),
              h('div.form-actions', h('button.btn.btn-primary', { type: 'button', 'data-test': 'totp-done', on: { click: load } }, t('totp.saved_codes'))));
          } catch (e) {
            fail(e, error);
            code.select();
          }
        },
      },
    },
    enrolment(doc),
    h('label.field', { for: 's-totp-code' }, h('span.field-label', t('totp.code')), code),
    error,
    h('div.form-actions',
      h('button.btn', { type: 'button', on: { click: load } }, t('action.cancel')),
      h('button.btn.btn-primary', { type: 'submit', 'data-test': 'totp-confirm' }, t('totp.confirm'))));
    body.append(form);
    code.focus();
  }

  load();
  return section;
}
