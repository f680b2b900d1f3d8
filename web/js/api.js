// The REST API as the browser uses it: same-origin requests with the session
// cookie, the CSRF token on every request that changes something, JSON errors.

let csrfToken = sessionStorage.getItem('lazaret.csrf') || '';
let onUnauthorized = null;

export function setCsrf(token) {
  csrfToken = token || '';
  if (csrfToken) sessionStorage.setItem('lazaret.csrf', csrfToken);
  else sessionStorage.removeItem('lazaret.csrf');
}

export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || String(status));
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body, { quiet401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') {
    if (csrfToken) headers['X-CSRF-Token'] = csrfToken;
  }
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', e.message);
  }
  let doc = null;
  const text = await res.text();
  if (text) {
    try { doc = JSON.parse(text); } catch { doc = null; }
  }
  if (!res.ok) {
    // {"error": {"code", "message"}}, or {"error": "message"} from some routes.
    let err = doc && doc.error ? doc.error : {};
    if (typeof err === 'string') err = { message: err };
    if (res.status === 401 && !quiet401 && onUnauthorized) onUnauthorized();
    throw new ApiError(res.status, err.code, err.message || (res.status + ' ' + res.statusText).trim());
  }
  return doc;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? '?' + s : '';
}
