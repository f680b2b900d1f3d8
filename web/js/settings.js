// The user's own settings: language and time zone (PUT /api/v1/me), and for end
// users their safelist and blocklist (GET/PUT /api/v1/me/slbl).

import { api } from './api.js';
import { h } from './dom.js';
import { t, LANGUAGES, language, browserTimeZone, rememberLanguage, setTimeZone } from './i18n.js';
import { session, route, notify, notifyError } from './session.js';

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
