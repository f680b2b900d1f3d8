// The application shell: who is signed in, the header, and which page to show
// for the path (client-side routes; the server answers index.html for all of them).

import { api, setCsrf, setUnauthorizedHandler, ApiError } from './api.js';
import { h, clear } from './dom.js';
import { t, chooseLanguage, rememberLanguage, language, setTimeZone, LANGUAGES } from './i18n.js';
import { renderLogin } from './login.js';
import { renderMessages } from './messages.js';
import { renderMessage } from './message.js';
import { renderUsers, renderAudit } from './admin.js';
import { renderSettings } from './settings.js';

export const session = { user: null };

const root = document.getElementById('app');
let statusTimer = null;
let pageCleanup = null;

export function isStaff() {
  return session.user && (session.user.role === 'admin' || session.user.role === 'operator');
}

export function isAdmin() {
  return session.user && session.user.role === 'admin';
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route();
}

// A short message in the status bar (role=status, read out by screen readers).
export function notify(text, kind = 'ok') {
  const bar = document.getElementById('status');
  if (!bar) return;
  bar.textContent = text;
  bar.className = 'status status-' + kind;
  bar.hidden = false;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { bar.hidden = true; }, kind === 'error' ? 10000 : 5000);
}

export function errorText(e) {
  if (e instanceof ApiError) {
    if (e.status === 0) return t('error.network');
    if (e.status === 403) return t('error.forbidden');
  }
  return t('error.generic', { message: e && e.message ? e.message : String(e) });
}

export function notifyError(e) {
  notify(errorText(e), 'error');
}

function link(path, label, current) {
  return h('a.nav-link', {
    href: path,
    'aria-current': current ? 'page' : null,
    on: { click: (ev) => { if (!ev.ctrlKey && !ev.metaKey && ev.button === 0) { ev.preventDefault(); navigate(path); } } },
  }, label);
}

function languageSwitch() {
  return h('div.lang-switch', { role: 'group', 'aria-label': t('lang.label') },
    LANGUAGES.map(([code, name]) => h('button.lang-btn', {
      type: 'button',
      lang: code,
      'aria-pressed': language() === code ? 'true' : 'false',
      'data-lang': code,
      on: {
        click: async () => {
          rememberLanguage(code);
          if (session.user) {
            session.user.language = code;
            // Best effort: the choice is also kept in this browser.
            api('PUT', '/api/v1/me', { language: code }).catch(() => {});
          }
          route();
        },
      },
    }, name)));
}

function header(active) {
  const u = session.user;
  const nav = [];
  if (u) {
    nav.push(link('/messages', t('nav.messages'), active === 'messages'));
    if (isAdmin()) {
      nav.push(link('/users', t('nav.users'), active === 'users'));
      nav.push(link('/audit', t('nav.audit'), active === 'audit'));
    }
    nav.push(link('/settings', t('nav.settings'), active === 'settings'));
  }
  return h('header.topbar',
    h('a.skip', { href: '#main' }, t('nav.skip')),
    h('a.brand', { href: '/', on: { click: (ev) => { ev.preventDefault(); navigate(u ? '/messages' : '/login'); } } },
      h('img.brand-logo', { src: '/favicon.svg', alt: '', width: 24, height: 24 }),
      h('span.brand-name', t('product')),
      h('span.brand-tag', t('tagline'))),
    h('nav.nav', { 'aria-label': 'main' }, nav),
    h('div.topbar-right',
      languageSwitch(),
      u ? h('div.user-menu',
        h('span.user-name', { 'data-test': 'user-name' }, u.username),
        h('span.user-role', t('role.' + u.role)),
        h('button.btn.btn-small', { type: 'button', 'data-test': 'signout', on: { click: signOut } }, t('user.signout')))
        : null));
}

async function signOut() {
  try { await api('DELETE', '/api/v1/session', undefined, { quiet401: true }); } catch { /* gone already */ }
  session.user = null;
  setCsrf('');
  navigate('/login', { replace: true });
}

// Asks the server who we are: the session cookie decides.
export async function loadSession() {
  try {
    const doc = await api('GET', '/api/v1/session', undefined, { quiet401: true });
    session.user = doc && doc.user ? doc.user : null;
    if (doc && doc.csrf_token) setCsrf(doc.csrf_token);
  } catch {
    session.user = null;
  }
  await loadPrefs();
  applyUserPrefs();
}

// The session names the user; their language and time zone come from /api/v1/me.
async function loadPrefs() {
  if (!session.user || ('language' in session.user && 'time_zone' in session.user)) return;
  try {
    const doc = await api('GET', '/api/v1/me', undefined, { quiet401: true });
    const me = doc && doc.user ? doc.user : doc;
    if (me) {
      session.user.language = me.language || null;
      session.user.time_zone = me.time_zone || null;
    }
  } catch { /* older servers: browser defaults */ }
}

export function applyUserPrefs() {
  const u = session.user;
  chooseLanguage(u && u.language);
  setTimeZone(u && u.time_zone);
}

export async function signedIn(doc) {
  session.user = doc.user;
  setCsrf(doc.csrf_token);
  await loadPrefs();
  applyUserPrefs();
}

function page(active, build) {
  if (pageCleanup) { pageCleanup(); pageCleanup = null; }
  clear(root);
  document.title = t('product');
  const main = h('main.main', { id: 'main', tabindex: '-1' });
  root.append(header(active), h('div.status', { id: 'status', role: 'status', 'aria-live': 'polite', hidden: true }), main);
  const cleanup = build(main);
  if (typeof cleanup === 'function') pageCleanup = cleanup;
}

export function route() {
  const path = location.pathname;
  if (!session.user && path !== '/login') {
    history.replaceState(null, '', '/login' + (path !== '/' ? '?next=' + encodeURIComponent(path + location.search) : ''));
    return route();
  }
  if (path === '/login') {
    if (session.user) return navigate('/messages', { replace: true });
    return page('login', (main) => renderLogin(main));
  }
  if (path === '/' ) return navigate('/messages', { replace: true });
  if (path === '/messages') return page('messages', (main) => renderMessages(main));
  const m = path.match(/^\/m\/([0-9a-fA-F-]{1,64})$/);
  if (m) return page('messages', (main) => renderMessage(main, m[1]));
  if (path === '/settings') return page('settings', (main) => renderSettings(main));
  if (path === '/users' || path === '/audit') {
    if (!isAdmin()) return page('', (main) => main.append(h('p.empty', t('page.forbidden'))));
    return page(path.slice(1), (main) => (path === '/users' ? renderUsers(main) : renderAudit(main)));
  }
  return page('', (main) => main.append(h('p.empty', t('page.not_found'))));
}

setUnauthorizedHandler(() => {
  session.user = null;
  if (location.pathname !== '/login') navigate('/login', { replace: true });
});

window.addEventListener('popstate', route);

(async function start() {
  chooseLanguage(null);
  await loadSession();
  route();
})();
