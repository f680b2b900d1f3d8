// What every page shares with the application shell: who is signed in (and their
// language and time zone), moving to another path, and the status bar. The shell
// (app.js) imports the pages and registers its router here with setRouter(); the
// pages import this module, never app.js, so the import graph has no cycle.

import { api, setCsrf, ApiError } from './api.js';
import { t, chooseLanguage, setTimeZone } from './i18n.js';

// pending: a sign-in waiting for its second factor ('totp', or 'enrol' for one to set up).
export const session = { user: null, pending: null };

let router = () => {};
let statusTimer = null;

// The shell's router: shows the page for location.pathname.
export function setRouter(fn) {
  router = fn;
}

// Shows the page for the current path again (after a language change, say).
export function route() {
  return router();
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  return router();
}

export function isStaff() {
  return session.user && (session.user.role === 'admin' || session.user.role === 'operator');
}

export function isAdmin() {
  return session.user && session.user.role === 'admin';
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

// Asks the server who we are: the session cookie decides.
export async function loadSession() {
  try {
    const doc = await api('GET', '/api/v1/session', undefined, { quiet401: true });
    session.user = doc && doc.user ? doc.user : null;
    session.pending = null;
    if (doc && doc.csrf_token) setCsrf(doc.csrf_token);
  } catch (e) {
    session.user = null;
    // a sign-in half done (reloaded, or the language changed): go on with its code
    session.pending = e && e.code === 'second_factor_required' ? 'totp'
      : e && e.code === 'second_factor_enrolment_required' ? 'enrol' : null;
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

