// One message: what it is (headers, recipients with their states and the remote
// server's replies, attachments) and its text. The text is the server's plain-text
// rendering; HTML is never rendered here, so nothing in a message is loaded or run.

import { api, ApiError } from './api.js';
import { h, clear, modal, formatBytes } from './dom.js';
import { t, formatDate, formatNumber, formatRelative } from './i18n.js';
import { session, isStaff, isAdmin, navigate, notify, notifyError } from './session.js';
import { stateBadge, verdictBadge, membershipBadge } from './badges.js';
import { askAction, pvoAction, failureText, typeLabel, allowedActions } from './pvo.js';

function ownAddresses(m) {
  const u = session.user;
  if (!u || !Array.isArray(u.addresses)) return [];
  const mine = new Set(u.addresses.map((a) => a.toLowerCase()));
  return (m.recipients || []).filter((r) => mine.has(String(r.address).toLowerCase()) && r.state === 'quarantined').map((r) => r.address);
}

// The end user's release: a confirmation with "also safelist this sender".
// Resolves true when the message was released.
export async function releaseWithSafelist(m) {
  const sender = (m.sender || '').trim();
  const box = h('input', { type: 'checkbox', id: 'safelist-sender', 'data-test': 'safelist-sender' });
  const body = [h('p', t('confirm.release_one'))];
  if (sender) body.push(h('label.check', { for: 'safelist-sender' }, box, ' ', t('confirm.safelist_sender', { sender })));
  const ok = await modal({ title: t('confirm.release_title'), body, confirm: t('action.release'), cancel: t('action.cancel') });
  if (!ok) return false;
  try {
    const mine = isStaff() ? [] : ownAddresses(m);
    await api('POST', '/api/v1/messages/' + m.id + '/release', mine.length ? { recipients: mine } : undefined);
    notify(t('done.released_one'));
  } catch (e) {
    notifyError(e);
    return false;
  }
  if (sender && box.checked) {
    try {
      const lists = await api('GET', '/api/v1/me/slbl');
      const safelist = Array.isArray(lists && lists.safelist) ? lists.safelist : [];
      if (!safelist.some((s) => s.toLowerCase() === sender.toLowerCase())) safelist.push(sender);
      await api('PUT', '/api/v1/me/slbl', { safelist, blocklist: Array.isArray(lists && lists.blocklist) ? lists.blocklist : [] });
      notify(t('done.released_one') + ' ' + t('done.safelisted', { sender }));
    } catch (e) {
      notifyError(e);
    }
  }
  return true;
}

function kv(label, value) {
  return [h('dt', label), h('dd', value === undefined || value === null || value === '' ? '—' : value)];
}

function tabs(defs) {
  const bar = h('div.tabs', { role: 'tablist' });
  const panels = h('div.tab-panels');
  defs.forEach((d, i) => {
    const id = 'tab-' + d.key;
    const btn = h('button.tab', {
      type: 'button', role: 'tab', id: id + '-btn', 'aria-controls': id,
      'aria-selected': i === 0 ? 'true' : 'false', tabindex: i === 0 ? '0' : '-1', 'data-test': 'tab-' + d.key,
    }, d.label);
    const panel = h('div.tab-panel', { role: 'tabpanel', id, 'aria-labelledby': id + '-btn', hidden: i !== 0 }, d.content);
    btn.addEventListener('click', () => {
      bar.querySelectorAll('[role=tab]').forEach((b) => { b.setAttribute('aria-selected', 'false'); b.tabIndex = -1; });
      panels.querySelectorAll('[role=tabpanel]').forEach((p) => { p.hidden = true; });
      btn.setAttribute('aria-selected', 'true');
      btn.tabIndex = 0;
      panel.hidden = false;
    });
    bar.append(btn);
    panels.append(panel);
  });
  bar.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
    const list = Array.from(bar.querySelectorAll('[role=tab]'));
    const i = list.indexOf(document.activeElement);
    const next = list[(i + (ev.key === 'ArrowRight' ? 1 : list.length - 1)) % list.length];
    next.focus();
    next.click();
  });
  return [bar, panels];
}

export function renderMessage(main, id) {
  const box = h('div.detail', h('p.muted', t('list.loading')));
  main.append(h('a.back', {
    href: '/messages',
    on: { click: (ev) => { ev.preventDefault(); history.length > 1 ? history.back() : navigate('/messages'); } },
  }, t('action.back')), box);

  async function act(m, release) {
    if (release && !isStaff()) {
      if (await releaseWithSafelist(m)) load();
      return;
    }
    const ok = await modal({
      title: t(release ? 'confirm.release_title' : 'confirm.delete_title'),
      body: [h('p', t(release ? 'confirm.release_one' : 'confirm.delete_one'))],
      confirm: t(release ? 'action.release' : 'action.delete'),
      cancel: t('action.cancel'),
      danger: !release,
    });
    if (!ok) return;
    try {
      const mine = isStaff() ? [] : ownAddresses(m);
      await api('POST', '/api/v1/messages/' + m.id + (release ? '/release' : '/delete'), mine.length ? { recipients: mine } : undefined);
      notify(t(release ? 'done.released_one' : 'done.deleted_one'));
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  // An action in one of a PVO message's quarantines (quarantine: null for a copy);
  // noRescan: an admin's release that its gateway does not rescan.
  async function pvoAct(m, action, quarantine, noRescan = false) {
    const name = t('pvo.name.' + action);
    let moveTargets = [];
    if (action === 'move') {
      try {
        const doc = await api('GET', '/api/v1/quarantines');
        moveTargets = ((doc && doc.quarantines) || []).filter((q) => q.type === 'policy' && q.name !== quarantine).map((q) => q.name);
      } catch (e) {
        notify(t('pvo.failed', { action: name, message: failureText(e) }), 'error');
        return;
      }
    }
    const body = await askAction(action, { target: t('pvo.this'), quarantine, moveTargets, noRescan });
    if (!body) return;
    try {
      const doc = await pvoAction(m.id, action, body);
      // Released from the last quarantine that held it: its recipients are on the way.
      const out = action === 'release' && doc && (doc.recipients || []).some((r) => r.state === 'releasing' || r.state === 'released');
      notify(out ? t('pvo.released_all') : t('pvo.done_one', { action: name }));

      load();
    } catch (e) {
      const text = t('pvo.failed', { action: name, message: failureText(e) });
      notify(text, 'error');
      // A refusal may be news (released or moved in another window, deleted): the
      // message is shown as it is now, the refusal above its quarantines.
      if (!(e instanceof ApiError) || e.status !== 0) await load();
      const alert = box.querySelector('[data-test=pvo-error]');
      if (alert) { alert.textContent = text; alert.hidden = false; }
    }
  }

  // The quarantines a PVO message is (or was) in: why, since and until when, its
  // state in each, and the actions where it is still held.
  function memberships(m) {
    const allowed = allowedActions();
    const buttons = (q) => {
      if (q.state !== 'held') return null;
      const b = (action, label, cls = '') => allowed.includes(action) ? h('button.btn.btn-small' + cls, {
        type: 'button', 'data-test': 'pvo-' + action, 'aria-label': t('pvo.aria_' + action, { q: q.name }),
        on: { click: () => pvoAct(m, action, q.name) },
      }, label) : null;
      // An admin delivers an Outbreak message judged a false positive although a rule
      // still matches it: its gateway does not rescan it (docs/GATEWAY.md).
      const noRescan = q.type === 'outbreak' && isAdmin() && allowed.includes('release') ? h('button.btn.btn-small', {
        type: 'button', 'data-test': 'pvo-release-norescan', 'aria-label': t('pvo.aria_release_norescan', { q: q.name }),
        on: { click: () => pvoAct(m, 'release', q.name, true) },
      }, t('pvo.release_norescan')) : null;
      return [b('release', t('pvo.name.release'), '.btn-primary'), noRescan, b('delete', t('pvo.name.delete'), '.btn-danger-outline'),
        b('delay', t('pvo.delay')), q.type === 'policy' ? b('move', t('pvo.move')) : null];
    };
    // An Outbreak membership's rescan (docs/GATEWAY.md): sent back, then the gateway's verdict.
    const rescanNote = (q) => {
      if (!['pending', 'clean', 'kept', 'requarantined'].includes(q.rescan)) return null;
      return h('div.cell-sub', { 'data-test': 'pvo-rescan', 'data-rescan': q.rescan },
        t('pvo.rescan_' + q.rescan, { at: formatDate(q.rescanned_at, { seconds: true }), rule: q.rescan_rule || '—' }));
    };
    return h('section.pvo', { 'aria-labelledby': 'pvo-title' },
      h('h2.section-title', { id: 'pvo-title' }, t('pvo.section')),
      h('p.muted.pvo-note', t('pvo.note')),
      h('p.form-error', { role: 'alert', 'data-test': 'pvo-error', hidden: true }),
      h('div.table-wrap', h('table.plain-table.pvo-table', { 'data-test': 'memberships' },
        h('thead', h('tr', h('th', t('pvo.quarantine')), h('th', t('pvo.type')), h('th', t('pvo.reason')),
          h('th', t('pvo.entered')), h('th', t('pvo.expires')), h('th', t('pvo.state')), h('th', h('span.sr-only', t('pvo.actions'))))),
        h('tbody', m.quarantines.map((q) => h('tr', { 'data-quarantine': q.name, 'data-state': q.state },
          h('td.q-name', h('a', { href: '/messages?quarantine=' + encodeURIComponent(q.name), on: { click: (ev) => { ev.preventDefault(); navigate('/messages?quarantine=' + encodeURIComponent(q.name)); } } }, q.name)),
          h('td', typeLabel(q.type)),
          h('td.pvo-reason', { 'data-test': 'pvo-reason' }, q.reason || h('span.muted', t('pvo.no_reason'))),
          h('td.col-date', { 'data-test': 'pvo-entered' }, formatDate(q.entered_at, { seconds: true })),
          h('td.col-date', { 'data-test': 'pvo-expires' }, q.expires_at ? [h('div', formatDate(q.expires_at)), h('div.cell-sub', formatRelative(q.expires_at))] : '—'),
          h('td', membershipBadge(q.state), rescanNote(q)),
          h('td', h('div.pvo-actions', buttons(q)))))))));
  }

  function show(m) {
    clear(box);
    const pvo = Array.isArray(m.quarantines) && m.quarantines.length > 0;
    const quarantined = (m.recipients || []).some((r) => r.state === 'quarantined');
    document.title = (m.subject || t('list.no_subject')) + ' — ' + t('product');
    // A PVO message leaves its quarantines one by one (below); the spam
    // quarantine's release and delete do not apply to it.
    const actions = h('div.detail-actions',
      pvo ? null : h('button.btn.btn-primary', { type: 'button', 'data-test': 'release', disabled: !quarantined, on: { click: () => act(m, true) } }, t('action.release')),
      pvo ? null : h('button.btn.btn-danger-outline', { type: 'button', 'data-test': 'delete', disabled: !quarantined, on: { click: () => act(m, false) } }, t('action.delete')),
      pvo && allowedActions().includes('copy') ? h('button.btn', { type: 'button', 'data-test': 'pvo-copy', on: { click: () => pvoAct(m, 'copy', null) } }, t('pvo.copy')) : null,
      isAdmin() ? h('a.btn', { href: '/api/v1/messages/' + encodeURIComponent(m.id) + '/raw', download: m.id + '.eml', 'data-test': 'download' }, t('action.download')) : null);

    const rcpts = h('ul.rcpt-list', (m.recipients || []).map((r) => h('li',
      h('span.rcpt-addr', r.address), ' ', stateBadge(r.state),
      r.reply ? h('div.cell-sub', { title: t('detail.reply') }, r.reply) : null)));

    const meta = h('dl.meta',
      kv(t('detail.from'), m.from),
      kv(t('detail.sender'), m.sender),
      kv(t('detail.recipients'), rcpts),
      kv(t('detail.received'), formatDate(m.received_at, { seconds: true })),
      kv(t('detail.expires'), m.expires_at ? formatDate(m.expires_at) : t('detail.never')),
      kv(t('detail.verdict'), verdictBadge(m.verdict)),
      kv(t('detail.score'), m.score === null || m.score === undefined ? null : formatNumber(m.score, 2)),
      kv(t('detail.size'), formatBytes(m.size)),
      isStaff() ? kv(t('detail.gateway'), m.gateway) : null,
      isStaff() ? kv(t('detail.quarantine'), m.quarantine) : null,
      kv(t('detail.id'), h('code', m.id)));

    const text = [];
    if (m.body_hidden) {
      // The administrator keeps message bodies from end users until they are released.
      text.push(h('p.note', { 'data-test': 'body-hidden' }, t('detail.body_hidden')));
    } else {
      if (m.text_body_from_html) text.push(h('p.note', t('detail.from_html')));
      if (m.text_body) text.push(h('pre.body-text', { 'data-test': 'text-body' }, m.text_body));
      else text.push(h('p.muted', t('detail.no_text')));
      if (m.text_body_truncated) text.push(h('p.note', t('detail.truncated')));
    }

    const headers = h('table.headers-table', h('tbody', (m.headers || []).map((hd) => h('tr', h('th', hd.name), h('td', hd.value)))));
    const atts = m.attachments || [];
    // Admins may save an attachment: a plain link (the session cookie goes with it); the
    // server sends it as an opaque download, so the browser never renders it.
    const canDownload = isAdmin();
    const attLink = (a, i) => h('a.btn.btn-small', {
      href: '/api/v1/messages/' + encodeURIComponent(m.id) + '/attachments/' + i,
      download: a.filename || '', 'data-test': 'attachment-download',
      'aria-label': t('att.download_named', { name: a.filename || t('att.unnamed') }),
    }, t('att.download'));
    const attTable = atts.length ? h('table.plain-table',
      h('thead', h('tr', h('th', t('att.name')), h('th', t('att.type')), h('th.num', t('att.size')),
        canDownload ? h('th', h('span.sr-only', t('att.download'))) : null)),
      h('tbody', atts.map((a, i) => h('tr', h('td', a.filename || t('att.unnamed')), h('td', h('code', a.content_type || '')), h('td.num', formatBytes(a.size)),
        canDownload ? h('td', attLink(a, i)) : null))))
      : h('p.muted', t('detail.no_attachments'));

    const [bar, panels] = tabs([
      { key: 'text', label: t('detail.tab_text'), content: text },
      { key: 'headers', label: t('detail.tab_headers'), content: h('div.table-wrap', headers) },
      { key: 'attachments', label: t('detail.tab_attachments', { n: atts.length }), content: attTable },
    ]);

    box.append(
      h('div.detail-head',
        h('h1.detail-subject', { 'data-test': 'detail-subject' }, m.subject || t('list.no_subject')),
        actions),
      meta, pvo ? memberships(m) : null, bar, panels);
  }

  async function load() {
    try {
      show(await api('GET', '/api/v1/messages/' + encodeURIComponent(id)));
    } catch (e) {
      clear(box).append(h('p.empty', e instanceof ApiError && e.status === 404 ? t('error.not_found') : e.message));
    }
  }

  function onKey(ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || document.querySelector('dialog[open]')) return;
    const tag = ev.target && ev.target.tagName;
    if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT') return;
    if (ev.key === 'Escape' || ev.key === 'u') { ev.preventDefault(); history.length > 1 ? history.back() : navigate('/messages'); }
    else if (ev.key === 'r') { const b = box.querySelector('[data-test=release]'); if (b && !b.disabled) { ev.preventDefault(); b.click(); } }
    else if (ev.key === 'd') { const b = box.querySelector('[data-test=delete]'); if (b && !b.disabled) { ev.preventDefault(); b.click(); } }
  }
  document.addEventListener('keydown', onKey);
  load();
  return () => document.removeEventListener('keydown', onKey);
}
