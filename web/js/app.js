// The application shell: the header, and which page to show for the path
// (client-side routes; the server answers index.html for all of them). Who is
// signed in, navigation and the status bar are session.js, shared with the pages.

import { api, setCsrf, setUnauthorizedHandler } from './api.js';
import { h, clear } from './dom.js';
import { t, chooseLanguage, rememberLanguage, language, LANGUAGES } from './i18n.js';
import { session, isAdmin, isStaff, navigate, setRouter, loadSession } from './session.js';
import { renderLogin } from './login.js';
import { renderMessages } from './messages.js';
import { renderMessage } from './message.js';
import { renderUsers, renderAudit } from './admin.js';
import { renderGateways } from './gateways.js';
import { renderLevels } from './levels.js';
import { renderSettings } from './settings.js';
import { renderQuarantines } from './quarantines.js';
import { renderTracking, renderTrackingMessage } from './tracking.js';
import { renderReports, REPORTS } from './reports.js';
import { renderReportSchedules } from './report_schedules.js';

const root = document.getElementById('app');
let pageCleanup = null;

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
    if (isStaff()) nav.push(link('/quarantines', t('nav.quarantines'), active === 'quarantines'));
    if (isAdmin()) {
      nav.push(link('/users', t('nav.users'), active === 'users'));
      nav.push(link('/gateways', t('nav.gateways'), active === 'gateways'));
      nav.push(link('/levels', t('nav.levels'), active === 'levels'));
      nav.push(link('/tracking', t('nav.tracking'), active === 'tracking'));
      nav.push(link('/reports', t('nav.reports'), active === 'reports'));
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

function page(active, build) {
  if (pageCleanup) { pageCleanup(); pageCleanup = null; }
  clear(root);
  document.title = t('product');
  const main = h('main.main', { id: 'main', tabindex: '-1' });
  root.append(header(active), h('div.status', { id: 'status', role: 'status', 'aria-live': 'polite', hidden: true }), main);
  const cleanup = build(main);
  if (typeof cleanup === 'function') pageCleanup = cleanup;
}

function route() {
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
  // End users have no quarantines page: for them it does not exist.
  if (path === '/quarantines' && isStaff()) return page('quarantines', (main) => renderQuarantines(main));
  // Tracking is for admins; anyone else who comes here gets the API's own 403
  // (the page asks, and shows the answer), never a search form.
  if (path === '/tracking') return page('tracking', (main) => renderTracking(main));
  if (path === '/tracking/message') {
    const id = new URLSearchParams(location.search).get('id') || '';
    return page('tracking', (main) => renderTrackingMessage(main, id));
  }
  const rm = path.match(/^\/reports(?:\/([a-z_]+))?$/);
  if (rm) {
    if (!isAdmin()) return page('', (main) => main.append(h('p.empty', t('page.forbidden'))));
    if (rm[1] === 'schedules') return page('reports', (main) => renderReportSchedules(main));
    const report = rm[1] || 'overview';
    if (REPORTS.includes(report) && !(rm[1] === 'overview')) return page('reports', (main) => renderReports(main, report));
  }
  if (path === '/users' || path === '/audit' || path === '/gateways' || path === '/levels') {
    if (!isAdmin()) return page('', (main) => main.append(h('p.empty', t('page.forbidden'))));
    const render = { '/users': renderUsers, '/audit': renderAudit, '/gateways': renderGateways, '/levels': renderLevels }[path];
    return page(path.slice(1), (main) => render(main));
  }
  return page('', (main) => main.append(h('p.empty', { 'data-test': 'not-found' }, t('page.not_found'))));
}

setRouter(route);

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
