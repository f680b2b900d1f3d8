// Drives the web application in headless Chromium for tests/e2e/test_web.py.
//
//   node tests/browser/web_e2e.mjs SCENARIO
//
// Environment: LAZARET_URL (the manager's http://host:port), LAZARET_ARTIFACTS
// (folder for screenshots), LAZARET_PARAMS (JSON: credentials and what the
// scenario expects). Prints one JSON object {"ok", "checks", "error",
// "screenshots", "dialogs", "console_errors", "values"} and exits 0 only when every
// check passed, no JavaScript dialog opened and the page logged no error.

import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BASE = process.env.LAZARET_URL;
const ARTIFACTS = process.env.LAZARET_ARTIFACTS || 'tests/e2e/artifacts';
const P = JSON.parse(process.env.LAZARET_PARAMS || '{}');
const scenario = process.argv[2];
const TIMEOUT = Number(process.env.LAZARET_TIMEOUT_MS || 15000);

const result = { ok: false, scenario, checks: [], screenshots: [], dialogs: [], console_errors: [], values: {} };

function check(name, cond, detail) {
  result.checks.push({ name, ok: Boolean(cond), detail: detail === undefined ? null : detail });
  if (!cond) throw new Error('check failed: ' + name + (detail !== undefined ? ' (' + JSON.stringify(detail) + ')' : ''));
}

async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name + '.png');
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push(path);
}

let lastPage = null;

async function launch(locale) {
  const profile = mkdtempSync(join(tmpdir(), 'lazaret-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.LAZARET_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    locale,
    timezoneId: 'Asia/Tokyo',
    viewport: { width: 1366, height: 860 },
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = context.pages()[0] || await context.newPage();
  lastPage = page;
  const watch = (p) => {
    p.on('dialog', async (d) => {
      result.dialogs.push({ type: d.type(), message: d.message() });
      await d.dismiss().catch(() => {});
    });
    p.on('pageerror', (e) => result.console_errors.push('pageerror: ' + e.message));
    p.on('console', (m) => {
      // A fetch answered 401/404 is logged by the browser itself; that is not our error.
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) result.console_errors.push(m.text());
    });
  };
  watch(page);
  context.on('page', watch);
  return { context, page, close: async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); } };
}

async function login(page, username, password) {
  await page.goto(BASE + '/');
  await page.waitForURL(/\/login/);
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('[data-test=login-submit]');
  await page.waitForURL(/\/messages/);
  await page.waitForSelector('[data-test=messages] tbody tr');
}

async function setLanguage(page, code) {
  await page.click(`.lang-btn[data-lang=${code}]`);
  await page.waitForFunction((c) => document.documentElement.lang === c, code);
}

// The subjects of the listed rows once the list has loaded (an empty list's cell,
// not the "loading" one in its place while the page asks the server).
async function rowSubjects(page) {
  await page.waitForSelector('[data-test=messages] tbody tr.msg-row, [data-test=messages] tbody td.empty:not(.loading)');
  return page.$$eval('[data-test=messages] tbody tr.msg-row .subject-link', (els) => els.map((e) => e.textContent));
}

async function waitRows(page, pred, what) {
  const deadline = Date.now() + TIMEOUT;
  let last;
  while (Date.now() < deadline) {
    last = await rowSubjects(page).catch(() => null);
    if (last && pred(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new Error('timed out waiting for ' + what + ': ' + JSON.stringify(last));
}

// ---- scenarios ----

// The sign-in page in both languages, chosen by the browser and by the switch.
async function loginPage() {
  for (const [locale, lang, title] of [['en-US', 'en', 'Sign in'], ['ja-JP', 'ja', 'サインイン']]) {
    const b = await launch(locale);
    try {
      await b.page.goto(BASE + '/messages');
      await b.page.waitForURL(/\/login/);
      await b.page.waitForSelector('.login-title');
      check(`${lang}: language from the browser`, await b.page.evaluate(() => document.documentElement.lang) === lang);
      check(`${lang}: title`, (await b.page.textContent('.login-title')) === title, await b.page.textContent('.login-title'));
      await shot(b.page, `login-${lang}`);
      const other = lang === 'en' ? 'ja' : 'en';
      await setLanguage(b.page, other);
      const t2 = await b.page.textContent('.login-title');
      check(`${lang}: switch to ${other}`, t2 === (other === 'ja' ? 'サインイン' : 'Sign in'), t2);
      // The choice is kept in this browser.
      await b.page.reload();
      await b.page.waitForSelector('.login-title');
      check(`${lang}: switch kept`, await b.page.evaluate(() => document.documentElement.lang) === other);
      if (P.bad_password) {
        await b.page.fill('#login-username', P.username || 'nobody');
        await b.page.fill('#login-password', 'wrong-password');
        await b.page.click('[data-test=login-submit]');
        await b.page.waitForSelector('[data-test=login-error]:not([hidden])');
        result.values[`login_error_${other}`] = await b.page.textContent('[data-test=login-error]');
      }
    } finally {
      await b.close();
    }
  }
}

// Admin: overview, Japanese search, keyboard, detail, release; inert payloads; both languages.
async function admin() {
  const b = await launch('en-US');
  const page = b.page;
  try {
    await login(page, P.username, P.password);
    await page.waitForSelector('[data-test=quarantine-card]');
    check('admin sees the quarantine overview', await page.locator('[data-test=quarantine-card]').count() >= 1);
    check('admin has the Users link', await page.locator('a.nav-link[href="/users"]').count() === 1);
    const all = await rowSubjects(page);
    check('all messages listed', all.length === P.total, all);
    await shot(page, 'admin-list-en');

    // Payloads in subject and From are text, not markup.
    for (const s of P.payload_subjects || []) {
      check('payload subject shown literally: ' + s, all.includes(s), all);
    }
    const fromTexts = await page.$$eval('.col-from .cell-main', (els) => els.map((e) => e.textContent));
    for (const f of P.payload_froms || []) {
      check('payload From shown literally: ' + f, fromTexts.some((x) => x.includes(f)), fromTexts);
    }
    check('no element injected by a payload', await page.locator('main img[src="x"], main script').count() === 0);
    check('no payload ran', await page.evaluate(() => window.__lazaretPwned === undefined));

    // Japanese subject search with "/".
    await page.keyboard.press('/');
    check('"/" focuses the search', await page.evaluate(() => document.activeElement && document.activeElement.id === 'f-subject'));
    await page.keyboard.type(P.search);
    await page.keyboard.press('Enter');
    await page.waitForURL((u) => new URL(u).searchParams.get('subject') === P.search);
    const found = await waitRows(page, (r) => r.length === P.search_expect.length, 'search results');
    check('search finds the Japanese subject', JSON.stringify(found.slice().sort()) === JSON.stringify(P.search_expect.slice().sort()), found);

    // Keyboard: focus the list, j/k move, x selects, Enter opens.
    await page.locator('main').click({ position: { x: 5, y: 5 } }).catch(() => {});
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.goto(BASE + '/messages');
    await waitRows(page, (r) => r.length === P.total, 'full list');
    await page.keyboard.press('j');
    await page.keyboard.press('j');
    await page.keyboard.press('k');
    const focusedIndex = await page.$$eval('tr.msg-row', (rows) => rows.findIndex((r) => r.classList.contains('focused')));
    check('j/j/k leaves the second row focused', focusedIndex === 1, focusedIndex);
    await page.keyboard.press('x');
    check('x selects the focused row', (await page.textContent('[data-test=selection]')).includes('1'));
    check('x marks the row', await page.$$eval('tr.msg-row', (rows) => rows[1].getAttribute('aria-selected')) === 'true');
    await page.keyboard.press('x');
    check('x again clears it', await page.$$eval('tr.msg-row', (rows) => rows[1].getAttribute('aria-selected')) === 'false');
    const focusVisible = await page.evaluate(() => {
      const r = document.querySelector('tr.msg-row.focused');
      return r && getComputedStyle(r).boxShadow !== 'none';
    });
    check('focused row is visibly marked', focusVisible);

    // Open the release target with Enter from the keyboard.
    const subjects = await rowSubjects(page);
    const target = subjects.indexOf(P.release_subject);
    check('release target listed', target >= 0, subjects);
    await page.keyboard.press('Home');
    for (let i = 0; i < 20 && (await page.$$eval('tr.msg-row', (rows) => rows.findIndex((r) => r.classList.contains('focused')))) > target; i++) await page.keyboard.press('k');
    for (let i = 0; i < 20 && (await page.$$eval('tr.msg-row', (rows) => rows.findIndex((r) => r.classList.contains('focused')))) < target; i++) await page.keyboard.press('j');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/m\//);
    await page.waitForSelector('[data-test=detail-subject]');
    check('detail shows the subject', (await page.textContent('[data-test=detail-subject]')) === P.release_subject);
    const body = await page.textContent('[data-test=text-body]');
    check('detail shows the decoded text body', body.includes(P.release_body_contains), body);
    check('admin can download the original', await page.locator('[data-test=download]').count() === 1);
    await shot(page, 'admin-detail-en');
    await setLanguage(page, 'ja');
    check('detail tab label in Japanese', (await page.textContent('[data-test=tab-text]')) === '本文');
    await shot(page, 'admin-detail-ja');
    await page.click('[data-test=release]');
    await page.waitForSelector('dialog[open]');
    await shot(page, 'admin-release-confirm-ja');
    await page.click('[data-test=dialog-confirm]');
    await page.waitForSelector('#status:not([hidden])');
    result.values.release_status = await page.textContent('#status');
    await page.waitForFunction(() => !document.querySelector('[data-test=release]') || document.querySelector('[data-test=release]').disabled);

    // Back to the list in Japanese: strings and the payload message detail.
    await page.goto(BASE + '/messages');
    await waitRows(page, (r) => r.length === P.total, 'list');
    const header = await page.$$eval('[data-test=messages] thead th', (els) => els.map((e) => e.textContent));
    check('table headings in Japanese', header.includes('件名') && header.includes('受信日時'), header);
    check('nav in Japanese', (await page.textContent('a.nav-link[href="/messages"]')) === 'メッセージ');
    await shot(page, 'admin-list-ja');
    if (P.payload_subjects && P.payload_subjects.length) {
      const i = (await rowSubjects(page)).indexOf(P.payload_subjects[0]);
      await page.locator('tr.msg-row').nth(i).click();
      await page.waitForSelector('[data-test=detail-subject]');
      check('payload subject literal in detail', (await page.textContent('[data-test=detail-subject]')) === P.payload_subjects[0]);
      const text = await page.textContent('[data-test=text-body]');
      check('HTML body shown as text only', !text.includes('<script') && text.includes(P.payload_body_contains || ''), text);
      check('no element injected in detail', await page.locator('main img[src="x"], main script, main iframe').count() === 0);
      await shot(page, 'admin-payload-ja');
    }
    await setLanguage(page, 'en');
    check('switch back to English', (await page.textContent('a.nav-link[href="/messages"]')) === 'Messages');

    // Administration pages: accounts and the audit log (which now holds the release).
    await page.click('a.nav-link[href="/users"]');
    await page.waitForSelector('[data-test=users] tbody tr');
    check('users page lists the admin', (await page.textContent('[data-test=users]')).includes(P.username));
    await shot(page, 'admin-users-en');
    await page.click('a.nav-link[href="/audit"]');
    await page.waitForSelector('[data-test=audit] tbody tr');
    const actions = await page.$$eval('[data-test=audit] tbody td:nth-child(3)', (els) => els.map((e) => e.textContent));
    check('audit log shows the release', actions.includes('release'), actions);
    await setLanguage(page, 'ja');
    await shot(page, 'admin-audit-ja');
  } catch (e) {
    await shot(b.page, 'failure-' + scenario).catch(() => {});
    throw e;
  } finally {
    await b.close();
  }
}

// End user: only their mail; release with "also safelist"; edit the lists.
async function enduser() {
  const b = await launch('ja-JP');
  const page = b.page;
  try {
    await login(page, P.username, P.password);
    check('end user has no Users link', await page.locator('a.nav-link[href="/users"]').count() === 0);
    check('end user sees no overview', await page.locator('[data-test=quarantine-card]').count() === 0);
    const subjects = await rowSubjects(page);
    check('only own messages', JSON.stringify(subjects.slice().sort()) === JSON.stringify(P.own_subjects.slice().sort()), subjects);
    await shot(page, 'enduser-list-ja');
    const i = subjects.indexOf(P.release_subject);
    await page.locator('tr.msg-row').nth(i).click();
    await page.waitForSelector('[data-test=detail-subject]');
    await page.click('[data-test=release]');
    await page.waitForSelector('dialog[open] [data-test=safelist-sender]');
    await page.check('[data-test=safelist-sender]');
    await shot(page, 'enduser-release-ja');
    await page.click('[data-test=dialog-confirm]');
    await page.waitForFunction(() => /セーフリスト/.test(document.getElementById('status').textContent));
    result.values.release_status = await page.textContent('#status');
    await page.click('a.nav-link[href="/settings"]');
    await page.waitForSelector('[data-test=save-slbl]:not([disabled])');
    const safe = await page.inputValue('[data-test=safelist]');
    check('released sender is on the safelist', safe.split('\n').includes(P.release_sender), safe);
    await page.fill('[data-test=safelist]', safe + '\n' + P.add_safe);
    await page.fill('[data-test=blocklist]', P.add_block);
    await page.click('[data-test=save-slbl]');
    await page.waitForFunction(() => /保存しました/.test(document.getElementById('status').textContent));
    await shot(page, 'enduser-settings-ja');
    await setLanguage(page, 'en');
    check('settings in English', (await page.textContent('h1.page-title')) === 'Settings');
    await shot(page, 'enduser-settings-en');
  } catch (e) {
    await shot(b.page, 'failure-' + scenario).catch(() => {});
    throw e;
  } finally {
    await b.close();
  }
}

// An end user from the directory: their mail to every directory address and none of
// anyone else's; release one; edit the lists in the settings and find them kept.
async function enduserLdap() {
  const b = await launch('ja-JP');
  const page = b.page;
  try {
    await login(page, P.username, P.password);
    check('signed in as the directory user', (await page.textContent('[data-test=user-name]')) === P.username);
    check('end user has no Users link', await page.locator('a.nav-link[href="/users"]').count() === 0);
    const subjects = await rowSubjects(page);
    check('mail to the directory mail and alternate addresses, nobody else\'s',
      JSON.stringify(subjects.slice().sort()) === JSON.stringify(P.own_subjects.slice().sort()), subjects);
    const rcpts = await page.$$eval('[data-test=messages] .rcpt-addr', (els) => els.map((e) => e.textContent.toLowerCase()));
    check('only own addresses in the recipients column',
      rcpts.every((r) => P.own_addresses.includes(r)) && P.own_addresses.every((a) => rcpts.includes(a)), rcpts);
    await shot(page, 'ldap-enduser-list-ja');

    const i = subjects.indexOf(P.release_subject);
    await page.locator('tr.msg-row').nth(i).click();
    await page.waitForSelector('[data-test=detail-subject]');
    check('detail shows the subject', (await page.textContent('[data-test=detail-subject]')) === P.release_subject);
    const body = await page.textContent('[data-test=text-body]');
    check('detail shows the decoded text body', body.includes(P.release_body_contains), body);
    await page.click('[data-test=release]');
    await page.waitForSelector('dialog[open] [data-test=dialog-confirm]');
    await shot(page, 'ldap-enduser-release-ja');
    await page.click('[data-test=dialog-confirm]');
    await page.waitForSelector('#status:not([hidden])');
    result.values.release_status = await page.textContent('#status');
    await page.waitForFunction(() => document.querySelector('[data-test=release]') && document.querySelector('[data-test=release]').disabled);
    await shot(page, 'ldap-enduser-released-ja');

    await page.click('a.nav-link[href="/settings"]');
    await page.waitForSelector('[data-test=save-slbl]:not([disabled])');
    check('lists start empty', (await page.inputValue('[data-test=safelist]')) === '' && (await page.inputValue('[data-test=blocklist]')) === '');
    await page.fill('[data-test=safelist]', P.add_safe);
    await page.fill('[data-test=blocklist]', P.add_block);
    await page.click('[data-test=save-slbl]');
    await page.waitForFunction(() => /保存しました/.test(document.getElementById('status').textContent));
    // A fresh load of the page shows what the server kept.
    await page.reload();
    await page.waitForSelector('[data-test=save-slbl]:not([disabled])');
    check('safelist kept', (await page.inputValue('[data-test=safelist]')) === P.add_safe, await page.inputValue('[data-test=safelist]'));
    check('blocklist kept', (await page.inputValue('[data-test=blocklist]')) === P.add_block, await page.inputValue('[data-test=blocklist]'));
    await shot(page, 'ldap-enduser-settings-ja');
    await setLanguage(page, 'en');
    check('settings in English', (await page.textContent('h1.page-title')) === 'Settings');
    await shot(page, 'ldap-enduser-settings-en');
  } finally {
    await b.close();
  }
}

// What a digest's release page says, by the language of the link.
const DIGEST_TEXT = {
  ja: {
    title: 'Lazaret 隔離メッセージ', confirm: 'このメッセージを受信トレイに配信しますか？', button: '解放する',
    done: 'メッセージを解放しました。まもなく配信されます。', used: 'このリンクはすでに使用されています。',
    sender: '差出人', subject: '件名',
  },
  en: {
    title: 'Lazaret quarantine', confirm: 'Deliver this message to your inbox?', button: 'Release',
    done: 'The message has been released and will be delivered shortly.', used: 'This link has already been used.',
    sender: 'Sender', subject: 'Subject',
  },
};
const DIGEST_INVALID = 'このリンクは無効です。 / This link is invalid.';

async function digestPageState(page) {
  return page.evaluate(() => ({
    lang: document.documentElement.lang,
    title: document.title,
    h1: (document.querySelector('h1') || {}).textContent,
    message: (document.getElementById('message') || {}).textContent,
    buttons: [...document.querySelectorAll('button')].map((x) => x.textContent),
    details: [...document.querySelectorAll('dl dt, dl dd')].map((x) => x.textContent),
    scripts: document.querySelectorAll('script').length,
    // The stylesheet applied (page background and the kind of answer).
    styled: getComputedStyle(document.body).backgroundColor === 'rgb(244, 246, 248)',
    kind: document.body.className,
  }));
}

// A digest mail (its HTML part) and its release link: the confirmation page, the
// release, a second click from a stale page, the link opened again, and a tampered one.
// The browser's own language is English throughout: the page speaks the link's.
async function digestLinks() {
  const b = await launch('en-US');
  const page = b.page;
  try {
    for (const L of P.links) {
      const T = DIGEST_TEXT[L.lang];
      const status = {};
      // The mail as a mail reader would show it (no network: the links are not followed).
      await page.setContent(L.html);
      check(`${L.lang}: digest lists the message`, (await page.textContent('table')).includes(L.subject));
      await shot(page, `digest-mail-${L.lang}`);

      // Two tabs on the same link before anything is done.
      const stale = await b.context.newPage();
      status.confirm = (await page.goto(L.url)).status();
      const stalePage = (await stale.goto(L.url)).status();
      check(`${L.lang}: both tabs show the confirmation`, stalePage === 200, stalePage);
      const c = await digestPageState(page);
      check(`${L.lang}: page in the link's language`, c.lang === L.lang, c);
      check(`${L.lang}: title`, c.title === T.title && c.h1 === T.title, c);
      check(`${L.lang}: confirmation question`, c.message === T.confirm, c);
      check(`${L.lang}: one button`, JSON.stringify(c.buttons) === JSON.stringify([T.button]), c);
      check(`${L.lang}: message summary`, JSON.stringify(c.details) === JSON.stringify([T.sender, L.sender, T.subject, L.subject]), c);
      check(`${L.lang}: no script in the page`, c.scripts === 0, c);
      check(`${L.lang}: confirmation styled`, c.styled && c.kind === 'page-confirm', c);
      await shot(page, `digest-confirm-${L.lang}`);

      const [released] = await Promise.all([page.waitForNavigation(), page.click('form button[type=submit]')]);
      status.release = released.status();
      check(`${L.lang}: POST to the same link`, released.request().method() === 'POST' && released.url() === L.url, released.url());
      const r = await digestPageState(page);
      check(`${L.lang}: released`, r.message === T.done && r.buttons.length === 0 && r.styled && r.kind === 'page-done', r);
      await shot(page, `digest-released-${L.lang}`);

      // The stale tab's button: the link is used now.
      const [second] = await Promise.all([stale.waitForNavigation(), stale.click('form button[type=submit]')]);
      status.second_post = second.status();
      const s2 = await digestPageState(stale);
      check(`${L.lang}: second click says already used`, s2.message === T.used && s2.buttons.length === 0, s2);
      await stale.close();

      // The link from the mail once more.
      status.reopen = (await page.goto(L.url)).status();
      const u = await digestPageState(page);
      check(`${L.lang}: reopened link says already used`, u.message === T.used && u.buttons.length === 0 && u.lang === L.lang && u.kind === 'page-error', u);
      await shot(page, `digest-used-${L.lang}`);

      status.tampered = (await page.goto(L.tampered)).status();
      const x = await digestPageState(page);
      check(`${L.lang}: tampered link is invalid`, x.message === DIGEST_INVALID && x.buttons.length === 0 && x.styled && x.kind === 'page-error', x);
      check(`${L.lang}: tampered link shows nothing of the message`, !(await page.content()).includes(L.subject));
      await shot(page, `digest-invalid-${L.lang}`);
      result.values.status = Object.assign(result.values.status || {}, { [L.lang]: status });
    }
  } finally {
    await b.close();
  }
}

// Attachments and hidden bodies: the admin saves an attachment from the detail (a
// download, never shown); an end user sees a note instead of a body not yet released.
async function attachmentsAndHiddenBodies() {
  const a = await launch('en-US');
  try {
    await login(a.page, P.admin, P.admin_password);
    await a.page.goto(BASE + '/m/' + P.attach_id);
    await a.page.waitForSelector('[data-test=detail-subject]');
    await a.page.click('[data-test=tab-attachments]');
    const links = a.page.locator('[data-test=attachment-download]');
    check('admin: one download link per attachment', await links.count() === P.attachments, await links.count());
    const href = await links.first().getAttribute('href');
    check('admin: the link points at the attachment', href === '/api/v1/messages/' + P.attach_id + '/attachments/0', href);
    const [dl] = await Promise.all([a.page.waitForEvent('download'), links.first().click()]);
    result.values.download_name = dl.suggestedFilename();
    const { readFileSync } = await import('node:fs');
    result.values.download_size = readFileSync(await dl.path()).length;
    check('admin: the page stays on the message', /\/m\//.test(a.page.url()), a.page.url());
    await shot(a.page, 'admin-attachments-en');
  } catch (e) {
    await shot(a.page, 'failure-' + scenario).catch(() => {});
    throw e;
  } finally {
    await a.close();
  }
  const b = await launch('ja-JP');
  try {
    await login(b.page, P.enduser, P.enduser_password);
    await b.page.goto(BASE + '/m/' + P.hidden_id);
    await b.page.waitForSelector('[data-test=body-hidden]');
    result.values.hidden_note_ja = await b.page.textContent('[data-test=body-hidden]');
    check('end user: no body text', await b.page.locator('[data-test=text-body]').count() === 0);
    check('end user: no download button for the original', await b.page.locator('[data-test=download]').count() === 0);
    await shot(b.page, 'enduser-hidden-body-ja');
    await b.page.click('[data-test=tab-attachments]');
    check('end user: attachments listed without links', await b.page.locator('[data-test=attachment-download]').count() === 0 &&
      await b.page.locator('.tab-panel:not([hidden]) table tbody tr').count() === P.attachments);
    await shot(b.page, 'enduser-attachments-ja');
    await setLanguage(b.page, 'en');
    result.values.hidden_note_en = await b.page.textContent('[data-test=body-hidden]');
  } catch (e) {
    await shot(b.page, 'failure-' + scenario).catch(() => {});
    throw e;
  } finally {
    await b.close();
  }
}

// The Gateways page (admins): the registry with a pending gateway, registering one
// (its token shown once, gone after "done" and on reload), a bad address refused
// with the server's message, removing with a confirmation that can be cancelled;
// in Japanese and English.
async function gateways() {
  const b = await launch('ja-JP');
  const page = b.page;
  const rowOf = (name) => page.locator(`[data-test=gateways] tr[data-gateway="${name}"]`);
  try {
    await login(page, P.username, P.password);
    await setLanguage(page, 'ja');
    check('admin has the Gateways link', await page.locator('a.nav-link[href="/gateways"]').count() === 1);
    await page.click('a.nav-link[href="/gateways"]');
    await page.waitForSelector(`[data-test=gateways] tr[data-gateway="${P.pending}"]`);
    const pendingRow = (await rowOf(P.pending).textContent()) || '';
    check('pending gateway listed as pending (ja)', pendingRow.includes('保留中'), pendingRow);
    check('pending gateway shows its group and version', pendingRow.includes(P.pending_group) && pendingRow.includes(P.pending_version), pendingRow);
    const regRow = (await rowOf(P.registered).textContent()) || '';
    check('registered gateway listed (ja)', regRow.includes('登録済み') && regRow.includes(P.registered_address), regRow);
    const backlog = await rowOf(P.registered).locator('[data-test=event-backlog]').textContent();
    check('events waiting on the gateway shown', backlog === P.registered_backlog, backlog);
    const lastEvent = await rowOf(P.registered).locator('[data-test=last-event]').textContent();
    check('its newest event shown', lastEvent.includes(P.registered_last_event), lastEvent);
    const pendingBacklog = await rowOf(P.pending).locator('[data-test=event-backlog]').textContent();
    check('no backlog known for a gateway that never pushed', pendingBacklog === '—', pendingBacklog);
    check('page title in Japanese', (await page.textContent('h1.page-title')) === 'ゲートウェイ');
    await shot(page, 'gateways-pending-ja');

    // a bad address: the server's message, nothing added
    await page.fill('#g-name', 'gw-bad');
    await page.fill('#g-address', 'not-an-ip');
    await page.click('[data-test=add-gateway]');
    await page.waitForSelector('#status.status-error:not([hidden])');
    const err = await page.textContent('#status');
    check('bad address refused with the server message', err.includes('"address" must be an IPv4 or IPv6 address'), err);
    check('no token shown for a refused registration', await page.locator('[data-test=gateway-token]').isHidden());
    check('nothing added', await rowOf('gw-bad').count() === 0);

    // register the pending one from its row: the form is filled in
    await rowOf(P.pending).locator('[data-test=register-pending]').click();
    check('form filled from the pending row', await page.inputValue('#g-name') === P.pending && await page.inputValue('#g-address') === P.pending_address);
    await page.fill('#g-address', P.new_address);
    await page.click('[data-test=add-gateway]');
    await page.waitForSelector('[data-test=gateway-token]:not([hidden])');
    const token = await page.inputValue('[data-test=gateway-token-value]');
    check('token shown once, 64 hex digits', /^[0-9a-f]{64}$/.test(token), token);
    result.values.token = token;
    await page.waitForFunction((n) => {
      const r = document.querySelector(`[data-test=gateways] tr[data-gateway="${n}"]`);
      return r && r.textContent.includes('登録済み');
    }, P.pending);
    await shot(page, 'gateways-token-ja');
    await page.click('[data-test=gateway-token-done]');
    check('token hidden after done', await page.locator('[data-test=gateway-token]').isHidden());
    check('token nowhere on the page any more', !(await page.content()).includes(token));

    // remove: cancel first, then confirm
    await rowOf(P.registered).locator('[data-test=remove-gateway]').click();
    await page.waitForSelector('dialog.dialog[open]');
    check('confirmation names the gateway', (await page.textContent('dialog.dialog')).includes(P.registered));
    await page.click('[data-test=dialog-cancel]');
    check('cancel keeps it', await rowOf(P.registered).count() === 1);
    await rowOf(P.registered).locator('[data-test=remove-gateway]').click();
    await page.click('[data-test=dialog-confirm]');
    await page.waitForFunction((n) => !document.querySelector(`[data-test=gateways] tr[data-gateway="${n}"]`), P.registered);
    check('removed after confirming', await rowOf(P.registered).count() === 0);
    await shot(page, 'gateways-ja');

    await setLanguage(page, 'en');
    await page.waitForSelector(`[data-test=gateways] tr[data-gateway="${P.pending}"]`);
    check('page title in English', (await page.textContent('h1.page-title')) === 'Gateways');
    const enRow = (await rowOf(P.pending).textContent()) || '';
    check('state in English', enRow.includes('Registered'), enRow);
    await shot(page, 'gateways-en');
  } finally {
    await b.close();
  }
}

// The Gateways page's migration (tests/e2e/test_migration.py): each gateway's
// progress as it reported it, the mapping editor refused (409) while one
// migrates, a custom mapping saved for one that has finished (a "not migrated"
// quarantine and a system name), a bad central name refused with the server's
// message; ja and en.
async function gatewayMapping() {
  const b = await launch('ja-JP');
  const page = b.page;
  const rowOf = (name) => page.locator(`[data-test=gateways] tr[data-gateway="${name}"]`);
  const status = async () => {
    await page.waitForSelector('#status:not([hidden])');
    return page.textContent('#status');
  };
  try {
    await login(page, P.username, P.password);
    await setLanguage(page, 'ja');
    await page.click('a.nav-link[href="/gateways"]');
    await page.waitForSelector(`[data-test=gateways] tr[data-gateway="${P.migrating}"]`);
    const running = await rowOf(P.migrating).locator('[data-test=migration]').textContent();
    check('progress of a running migration (ja)', running === '移行中 1200/20000（失敗 3）', running);
    const done = await rowOf(P.migrated).locator('[data-test=migration]').textContent();
    check('a finished migration (ja)', done.startsWith('移行完了 ') && done.endsWith('（失敗 3）、通知メール未送信'), done);
    const none = await rowOf(P.idle).locator('[data-test=migration]').textContent();
    check('no migration yet', none === '—', none);
    check('migration column header (ja)', (await page.textContent('[data-test=gateways] thead')).includes('移行'));

    // while it migrates, a change is refused with the server's message
    await rowOf(P.migrating).locator('[data-test=edit-mapping]').click();
    await page.waitForSelector('[data-test=mapping-editor]:not([hidden])');
    check('editor names the gateway', (await page.textContent('[data-test=mapping-editor] h2')).includes(P.migrating));
    check('editor shows the progress', (await page.textContent('[data-test=mapping-migration]')).includes('1200/20000'));
    await page.selectOption('[data-test=mapping-mode]', 'custom');
    await page.fill('[data-test=mapping-local] >> nth=0', 'A');
    await page.fill('[data-test=mapping-central] >> nth=0', 'X');
    await page.click('[data-test=mapping-save]');
    await page.waitForSelector('#status.status-error:not([hidden])');
    const busy = await status();
    check('409 while migrating', busy.includes(`gateway ${P.migrating} is migrating (1200/20000); change the mapping when it has finished`), busy);
    await shot(page, 'gateway-mapping-busy-ja');
    await page.click('[data-test=mapping-close]');
    check('editor closed', await page.locator('[data-test=mapping-editor]').isHidden());

    // a custom mapping for the finished one
    await rowOf(P.migrated).locator('[data-test=edit-mapping]').click();
    await page.waitForSelector('[data-test=mapping-editor]:not([hidden])');
    check('automatic at first', await page.inputValue('[data-test=mapping-mode]') === 'automatic');
    await page.selectOption('[data-test=mapping-mode]', 'custom');
    await page.fill('[data-test=mapping-local] >> nth=0', 'Confidential');
    await page.fill('[data-test=mapping-central] >> nth=0', 'Legal');
    await page.click('[data-test=mapping-add]');
    await page.fill('[data-test=mapping-local] >> nth=1', 'Old Stuff');
    await page.check('[data-test=mapping-drop] >> nth=1');
    check('a dropped quarantine takes no central name', await page.locator('[data-test=mapping-central] >> nth=1').isDisabled());
    await page.click('[data-test=mapping-add]');
    await page.fill('[data-test=mapping-local] >> nth=2', 'Bad');
    await page.fill('[data-test=mapping-central] >> nth=2', 'spam');
    await page.click('[data-test=mapping-save]');
    // the 409 above may still be shown: wait for the error of this save
    await page.waitForFunction((prev) => {
      const s = document.querySelector('#status');
      return s && !s.hidden && s.classList.contains('status-error') && s.textContent !== prev;
    }, busy);
    const bad = await status();
    check('a bad central name refused with the server message', bad.includes('"Bad": the central quarantine cannot be spam'), bad);
    await page.fill('[data-test=mapping-local] >> nth=2', 'VIRUS');
    await page.fill('[data-test=mapping-central] >> nth=2', 'Virus');
    await page.click('[data-test=mapping-save]');
    await page.waitForSelector('#status:not(.status-error):not([hidden])');
    const saved = await status();
    check('saved (ja)', saved.includes(`${P.migrated} のマッピングを保存しました。`), saved);
    // the editor reloads what the manager keeps: the system name lowercase
    await page.waitForFunction(() => {
      const c = document.querySelectorAll('[data-test=mapping-central]');
      return c.length === 3 && [...c].some((e) => e.value === 'virus');
    });
    check('custom after saving', await page.inputValue('[data-test=mapping-mode]') === 'custom');
    await shot(page, 'gateway-mapping-ja');

    await setLanguage(page, 'en');
    await page.waitForSelector(`[data-test=gateways] tr[data-gateway="${P.migrating}"]`);
    const runningEn = await rowOf(P.migrating).locator('[data-test=migration]').textContent();
    check('progress in English', runningEn === 'Migrating 1200/20000 (3 failed)', runningEn);
    const doneEn = await rowOf(P.migrated).locator('[data-test=migration]').textContent();
    check('finished in English', doneEn.startsWith('Migrated ') && doneEn.endsWith(' (3 failed), mail pending'), doneEn);
    await rowOf(P.migrated).locator('[data-test=edit-mapping]').click();
    await page.waitForSelector('[data-test=mapping-editor]:not([hidden])');
    check('editor in English', (await page.textContent('[data-test=mapping-editor] h2')) === `Quarantine mapping of ${P.migrated}`);
    await shot(page, 'gateway-mapping-en');
  } finally {
    await b.close();
  }
}

// ---- PVO quarantines (tests/e2e/test_web_pvo.py) ----

// The actions' requests: one message (POST /api/v1/messages/{id}/{action}) or every
// message a filter matches (POST /api/v1/messages/{action}).
const ACTION_PATH = /^\/api\/v1\/messages\/(?:([^/]+)\/(release|delete|delay|move|copy)|(release|delete|delay|move))$/;

// The text of an API error reply: {"error": {"message"}} or {"error": "..."}.
function apiErrorText(reply) {
  if (!reply || !reply.error) return null;
  return typeof reply.error === 'string' ? reply.error : reply.error.message;
}

// Runs fn and collects the n action requests it makes on page: method, path, JSON
// body, status and JSON reply of each.
async function actionRequests(page, n, fn) {
  const seen = [];
  const pending = [];
  const onResponse = (r) => {
    const req = r.request();
    const path = new URL(r.url()).pathname;
    if (req.method() !== 'POST' || !ACTION_PATH.test(path)) return;
    pending.push((async () => {
      let reply = null;
      try { reply = await r.json(); } catch { /* not JSON */ }
      seen.push({ method: req.method(), path, body: JSON.parse(req.postData() || 'null'), status: r.status(), reply });
    })());
  };
  page.on('response', onResponse);
  try {
    await fn();
    const deadline = Date.now() + TIMEOUT;
    while (seen.length < n && Date.now() < deadline) await page.waitForTimeout(50);
    await Promise.all(pending);
    await page.waitForTimeout(200); // one more than expected would show here
  } finally {
    page.off('response', onResponse);
  }
  return seen;
}

async function statusText(page, pred, what) {
  const deadline = Date.now() + TIMEOUT;
  let text = null;
  while (Date.now() < deadline) {
    text = await page.evaluate(() => {
      const bar = document.getElementById('status');
      return bar && !bar.hidden ? bar.textContent : null;
    });
    if (text !== null && pred(text)) break;
    await page.waitForTimeout(50);
  }
  check(what, text !== null && pred(text), text);
  return text;
}

async function overviewRows(page) {
  await page.waitForSelector('[data-test=quarantines] tbody tr[data-quarantine]');
  return page.$$eval('[data-test=quarantines] tbody tr[data-quarantine]', (rows) => rows.map((r) => ({
    name: r.dataset.quarantine,
    type: r.dataset.type,
    messages: r.querySelector('[data-test=q-messages]').dataset.value,
    bytes: r.querySelector('[data-test=q-bytes]').dataset.value,
    bytesText: r.querySelector('[data-test=q-bytes]').textContent,
    oldest: r.querySelector('[data-test=q-oldest]').textContent,
    oldestIso: (r.querySelector('[data-test=q-oldest] time') || {}).dateTime || null,
    edit: Boolean(r.querySelector('[data-test=q-edit]')),
    del: Boolean(r.querySelector('[data-test=q-delete]')),
  })));
}

async function confirmDialog(page) {
  await page.waitForSelector('dialog.dialog[open]');
  await page.click('dialog.dialog[open] [data-test=dialog-confirm]');
  await page.waitForSelector('dialog.dialog[open]', { state: 'detached' });
}

// The rows of a message's memberships: quarantine, state, reason, held until.
async function membershipRows(page) {
  await page.waitForSelector('[data-test=memberships] tbody tr');
  return page.$$eval('[data-test=memberships] tbody tr', (rs) => rs.map((r) => ({
    name: r.dataset.quarantine, state: r.dataset.state,
    reason: r.querySelector('[data-test=pvo-reason]').textContent,
    expires: (r.querySelector('[data-test=pvo-expires] div') || {}).textContent || null,
    move: Boolean(r.querySelector('[data-test=pvo-move]')),
    release: Boolean(r.querySelector('[data-test=pvo-release]')),
    rescan: (r.querySelector('[data-test=pvo-rescan]') || {}).textContent || null,
  })));
}

// An Outbreak message sent back for rescanning, on its page in en and ja.
async function pvoRescan() {
  const b = await launch('en-US');
  try {
    await login(b.page, P.username, P.password);
    for (const lang of ['en', 'ja']) {
      await setLanguage(b.page, lang);
      for (const id of P.ids) {
        await b.page.goto(BASE + '/m/' + id);
        result.values[lang + ':' + id] = await membershipRows(b.page);
      }
      await shot(b.page, 'pvo-rescan-' + lang);
    }
  } finally {
    await b.close();
  }
}

// An admin's "Release without rescan" of a held Outbreak message (P.id), in en
// and ja; an operator is not offered it (P.other).
async function pvoNoRescan() {
  const sel = '[data-test=memberships] tr[data-quarantine="outbreak"] [data-test=pvo-release-norescan]';
  const b = await launch('en-US');
  try {
    await login(b.page, P.admin.username, P.admin.password);
    await b.page.goto(BASE + '/m/' + P.id);
    await b.page.waitForSelector(sel);
    result.values.en_button = await b.page.textContent(sel);
    result.values.en_aria = await b.page.getAttribute(sel, 'aria-label');
    await setLanguage(b.page, 'ja');
    await b.page.waitForFunction((s) => document.querySelector(s) && document.querySelector(s).textContent === '再スキャンせずに解放', sel);
    result.values.ja_button = await b.page.textContent(sel);
    await shot(b.page, 'pvo-norescan-ja');
    const r = await actionRequests(b.page, 1, async () => {
      await b.page.click(sel);
      await b.page.waitForSelector('dialog.dialog[open]');
      result.values.ja_dialog = await b.page.textContent('dialog.dialog[open] p');
      result.values.ja_confirm = await b.page.textContent('dialog.dialog[open] [data-test=dialog-confirm]');
      await confirmDialog(b.page);
    });
    result.values.requests = r.map((x) => ({ path: x.path, body: x.body, status: x.status }));
    await statusText(b.page, (s) => s === 'すべての隔離領域から解放されたため、メッセージを配信します。', 'released reported in Japanese');
    result.values.after = await waitMemberships(b.page, (m) => m.length === 1 && m[0].state === 'released', 'the membership shows released');
    result.values.after_buttons = await b.page.locator(sel).count();
  } finally {
    await b.close();
  }
  const o = await launch('en-US');
  try {
    await login(o.page, P.operator.username, P.operator.password);
    await o.page.goto(BASE + '/m/' + P.other);
    await o.page.waitForSelector('[data-test=memberships] tr[data-quarantine="outbreak"] [data-test=pvo-release]');
    result.values.operator_release = await o.page.locator('[data-test=pvo-release]').count();
    result.values.operator_norescan = await o.page.locator('[data-test=pvo-release-norescan]').count();
  } finally {
    await o.close();
  }
}

// Waits until the memberships shown satisfy pred; returns them.
async function waitMemberships(page, pred, what) {
  const deadline = Date.now() + TIMEOUT;
  let last = null;
  while (Date.now() < deadline) {
    last = await membershipRows(page).catch(() => null);
    if (last && pred(last)) return last;
    await page.waitForTimeout(100);
  }
  check(what, false, last);
  return last;
}

function byName(rows) {
  return Object.fromEntries(rows.map((r) => [r.name, r]));
}

// One action from a message's page: the button (in a membership's row, or the copy
// button), the dialog filled by fill, confirmed; returns the one request made.
async function detailAction(page, id, action, row, fill, wantBody) {
  const sel = action === 'copy' ? '[data-test=pvo-copy]' : `[data-test=memberships] tr[data-quarantine="${row}"] [data-test=pvo-${action}]`;
  const r = await actionRequests(page, 1, async () => {
    await page.click(sel);
    await page.waitForSelector('dialog.dialog[open]');
    if (fill) await fill();
    await confirmDialog(page);
  });
  check(`${action}: one request with the contract's body`, r.length === 1 &&
    r[0].path === `/api/v1/messages/${id}/${action}` && JSON.stringify(r[0].body) === JSON.stringify(wantBody), r);
  return r[0];
}

async function pvoAdmin() {
  const b = await launch('en-US');
  const page = b.page;
  const Q = P.quarantines;
  try {
    await login(page, P.username, P.password);
    check('admin has the Quarantines link', await page.locator('a.nav-link[href="/quarantines"]').count() === 1);
    await page.click('a.nav-link[href="/quarantines"]');
    let rows = await overviewRows(page);
    check('every quarantine of the API listed', JSON.stringify(rows.map((r) => r.name).sort()) === JSON.stringify(Object.keys(Q).sort()), rows);
    for (const r of rows) {
      const q = Q[r.name];
      check(`${r.name}: count as the API`, Number(r.messages) === q.messages, [r, q]);
      check(`${r.name}: bytes as the API`, Number(r.bytes) === q.bytes, [r, q]);
      check(`${r.name}: size in human units`, /^\d+(\.\d)? (B|KB|MB|GB)$/.test(r.bytesText), r.bytesText);
      check(`${r.name}: type`, r.type === q.type, [r, q]);
      if (q.oldest) check(`${r.name}: oldest relative and absolute`, r.oldestIso === q.oldest && /ago|now|minute/.test(r.oldest), r);
      else check(`${r.name}: no oldest`, r.oldest === '—', r);
      check(`${r.name}: delete only for policy`, r.del === (q.type === 'policy'), r);
      check(`${r.name}: edit for every PVO one`, r.edit === (q.type !== 'spam'), r);
    }
    // A long Japanese name wraps inside its cell: the table does not overflow the page.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check('no horizontal overflow with a long Japanese name', overflow <= 0, overflow);
    await shot(page, 'pvo-quarantines-en');
    await setLanguage(page, 'ja');
    await overviewRows(page);
    check('page title in Japanese', (await page.textContent('h1.page-title')) === '隔離領域');
    const jaOldest = await page.textContent(`tr[data-quarantine="Finance"] [data-test=q-oldest]`);
    check('relative time in Japanese', /前|今|分/.test(jaOldest), jaOldest);
    await shot(page, 'pvo-quarantines-ja');
    await setLanguage(page, 'en');

    // ---- the Finance list: keyboard release, selection delete, bulk delay and delete ----
    await page.click('tr[data-quarantine="Finance"] [data-test=q-link]');
    await page.waitForURL((u) => new URL(u).searchParams.get('quarantine') === 'Finance');
    const subjects = await waitRows(page, (r) => r.length === P.finance_subjects.length, 'Finance listing');
    check('the quarantine\'s messages listed', JSON.stringify(subjects.slice().sort()) === JSON.stringify(P.finance_subjects.slice().sort()), subjects);
    const reasons = await page.$$eval('[data-test=row-reason]', (els) => els.map((e) => e.textContent));
    check('each row shows its reason', reasons.length === 4 && reasons.every((x) => x === 'Reason: Finance rule'), reasons);
    await page.waitForSelector('[data-test=pvo-bar]:not([hidden])');
    check('spam actions hidden in a PVO quarantine', await page.locator('[data-test=release-selected]').isHidden());
    const actions = await page.$$eval('[data-test=pvo-action] option', (els) => els.map((e) => e.value));
    check('admin has every action, copy too', JSON.stringify(actions) === JSON.stringify(['release', 'delete', 'delay', 'move', 'copy']), actions);
    await shot(page, 'pvo-listing-en');
    const rowIds = async () => page.$$eval('[data-test=messages] tbody tr.msg-row', (rs) => rs.map((r) => r.dataset.id));

    // Keyboard: j moves, r releases the focused row from this quarantine, Enter confirms.
    check('keys hint names the quarantine actions', (await page.textContent('.keys-hint')).includes('r release from this quarantine'));
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.keyboard.press('j');
    const focusedId = await page.$eval('tr.msg-row.focused', (r) => r.dataset.id);
    let reqs = await actionRequests(page, 1, async () => {
      await page.keyboard.press('r');
      await page.waitForSelector('dialog.dialog[open]');
      check('r asks to release this message from the quarantine', (await page.textContent('dialog.dialog[open] .dialog-body')).startsWith('Release this message from the quarantine Finance?'));
      await page.keyboard.press('Enter');
      await page.waitForSelector('dialog.dialog[open]', { state: 'detached' });
    });
    check('keyboard release: one request for the focused message', reqs.length === 1 && reqs[0].path === `/api/v1/messages/${focusedId}/release` &&
      JSON.stringify(reqs[0].body) === JSON.stringify({ quarantine: 'Finance' }) && reqs[0].status === 202, reqs);
    await statusText(page, (s) => s === 'Release: 1 done, 0 failed.', 'keyboard release reported');
    await waitRows(page, (r) => r.length === 3, 'the released message leaves the list');
    check('the released message is not listed any more', !(await rowIds()).includes(focusedId));
    result.values.keyboard_released = focusedId;

    // The selection: one request per selected message, "n done, m failed".
    const victim = (await rowIds())[0];
    await page.check(`tr.msg-row[data-id="${victim}"] input[type=checkbox]`);
    await page.selectOption('[data-test=pvo-action]', 'delete');
    reqs = await actionRequests(page, 1, async () => {
      await page.click('[data-test=pvo-apply-selected]');
      await page.waitForSelector('dialog.dialog[open]');
      const text = await page.textContent('dialog.dialog[open]');
      check('selection confirmation names the message and quarantine', text.includes('Delete this message from the quarantine Finance?'), text);
      await confirmDialog(page);
    });
    check('delete selected: one request per selected message', reqs.length === 1 && reqs[0].path === `/api/v1/messages/${victim}/delete` &&
      JSON.stringify(reqs[0].body) === JSON.stringify({ quarantine: 'Finance' }) && reqs[0].status === 200, reqs);
    await statusText(page, (s) => s === 'Delete: 1 done, 0 failed.', 'selection result counted');
    await waitRows(page, (r) => r.length === 2, 'the deleted message leaves the list');
    check('the deleted message is not listed any more', !(await rowIds()).includes(victim));
    result.values.selection_deleted = victim;
    const remaining = await rowIds();
    result.values.bulk_ids = remaining;

    // Everything the filter matches: one request to the bulk route, "n changed".
    await page.selectOption('[data-test=pvo-action]', 'delay');
    reqs = await actionRequests(page, 1, async () => {
      await page.click('[data-test=pvo-apply-matching]');
      await page.waitForSelector('dialog.dialog[open] [data-test=delay-other]');
      check('matching confirmation counts the matches', (await page.textContent('dialog.dialog[open]')).includes('all 2 messages matching the filter'));
      await page.fill('[data-test=delay-other]', '36h');
      await page.keyboard.press('Enter');
      await page.waitForSelector('dialog.dialog[open]', { state: 'detached' });
    });
    check('delay matching: one bulk request with the typed duration', reqs.length === 1 && reqs[0].path === '/api/v1/messages/delay' &&
      JSON.stringify(reqs[0].body) === JSON.stringify({ filter: { quarantine: 'Finance' }, by: '36h' }), reqs);
    check('delay matching: the API changed both', reqs[0].status === 200 && JSON.stringify(reqs[0].reply) === JSON.stringify({ changed: 2, queued: 0 }), reqs[0]);
    await statusText(page, (s) => s === 'Delay exit: 2 changed.', 'bulk delay reported as changed');
    // A bad typed duration stays in the dialog (nothing sent).
    reqs = await actionRequests(page, 0, async () => {
      await page.click('[data-test=pvo-apply-matching]');
      await page.waitForSelector('dialog.dialog[open] [data-test=delay-other]');
      await page.fill('[data-test=delay-other]', 'soon');
      await page.click('dialog.dialog[open] [data-test=dialog-confirm]');
      await page.waitForTimeout(200);
      check('a bad duration keeps the dialog open', await page.locator('dialog.dialog[open]').count() === 1);
      await page.click('dialog.dialog[open] [data-test=dialog-cancel]');
    });
    check('nothing sent for a bad duration', reqs.length === 0, reqs);

    await page.selectOption('[data-test=pvo-action]', 'delete');
    reqs = await actionRequests(page, 1, async () => {
      await page.click('[data-test=pvo-apply-matching]');
      await page.waitForSelector('dialog.dialog[open]');
      check('delete matching: the confirmation counts the matches', (await page.textContent('dialog.dialog[open]')).includes('Delete all 2 messages matching the filter from the quarantine Finance?'));
      await confirmDialog(page);
    });
    check('delete matching: one bulk request', reqs.length === 1 && reqs[0].path === '/api/v1/messages/delete' &&
      JSON.stringify(reqs[0].body) === JSON.stringify({ filter: { quarantine: 'Finance' } }), reqs);
    check('delete matching: the API changed both', reqs[0].status === 200 && JSON.stringify(reqs[0].reply) === JSON.stringify({ changed: 2, queued: 0 }), reqs[0]);
    await statusText(page, (s) => s === 'Delete: 2 changed.', 'bulk delete reported as changed');
    await waitRows(page, (r) => r.length === 0, 'the list is empty after deleting all');
    // The overview's count follows: Finance holds nothing now.
    const financeCount = () => page.evaluate(() => {
      const card = [...document.querySelectorAll('[data-test=quarantine-card]')].find((c) => c.querySelector('.card-name').textContent === 'Finance');
      return card ? card.querySelector('.stat-value').textContent : null;
    });
    const countDeadline = Date.now() + TIMEOUT;
    while ((await financeCount()) !== '0' && Date.now() < countDeadline) await page.waitForTimeout(100);
    check('the overview counts no message left in Finance', (await financeCount()) === '0', await financeCount());
    await shot(page, 'pvo-listing-emptied-en');

    // The long Japanese name's listing, in Japanese: the toolbar keeps its shape.
    await page.goto(BASE + '/quarantines');
    await overviewRows(page);
    await setLanguage(page, 'ja');
    await page.click(`tr[data-quarantine="${P.long_name}"] [data-test=q-link]`);
    await page.waitForURL((u) => new URL(u).searchParams.get('quarantine') === P.long_name);
    const longSubjects = await waitRows(page, (r) => r.length === 1, 'long-name listing');
    check('long-name listing', longSubjects[0] === P.invoice_subject, longSubjects);
    await page.waitForSelector('[data-test=pvo-bar]:not([hidden])');
    const longReason = await page.textContent('[data-test=row-reason]');
    check('reason in Japanese', longReason === '理由: ' + P.memberships[P.long_name].reason, longReason);
    const listOverflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check('listing: no horizontal overflow with a long Japanese name', listOverflow <= 0, listOverflow);
    const barHeight = await page.evaluate(() => document.querySelector('[data-test=pvo-bar]').getBoundingClientRect().height);
    check('listing: the action bar stays one line', barHeight < 40, barHeight);
    await shot(page, 'pvo-listing-ja');
    await setLanguage(page, 'en');

    // ---- the invoice (in two quarantines): copy, release from one, then the other ----
    await page.goto(BASE + '/m/' + P.invoice_id);
    let mems = await membershipRows(page);
    check('decoded Japanese subject', (await page.textContent('[data-test=detail-subject]')) === P.invoice_subject);
    check('decoded Japanese From', (await page.textContent('dl.meta')).includes(P.invoice_from));
    check('no spam release button on a PVO message', await page.locator('[data-test=release]').count() === 0);
    check('every membership shown', JSON.stringify(mems.map((x) => x.name).sort()) === JSON.stringify(Object.keys(P.memberships).sort()), mems);
    for (const x of mems) {
      const want = P.memberships[x.name];
      check(`${x.name}: reason`, x.reason === want.reason, x);
      check(`${x.name}: held until, in the user's zone`, x.expires === want.expires.en, [x, want]);
      check(`${x.name}: state held`, x.state === 'held', x);
      check(`${x.name}: move only from a policy quarantine`, x.move === (want.type === 'policy'), x);
    }
    const detailOverflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check('detail: no horizontal overflow with a long Japanese name', detailOverflow <= 0, detailOverflow);
    await shot(page, 'pvo-detail-en');

    let r = await detailAction(page, P.invoice_id, 'copy', null, async () => {
      await page.fill('dialog.dialog[open] [data-test=copy-to]', P.copy_to.join('\n'));
    }, { to: P.copy_to });
    check('copy accepted', r.status === 202, r);
    await statusText(page, (s) => s === 'Send a copy: done.', 'copy reported');
    mems = await membershipRows(page);
    check('a copy changes no membership', mems.every((x) => x.state === 'held'), mems);

    // A second tab opened now still offers the release that the first one makes.
    const stale = await b.context.newPage();
    await stale.goto(BASE + '/m/' + P.invoice_id);
    await membershipRows(stale);

    r = await detailAction(page, P.invoice_id, 'release', P.long_name, null, { quarantine: P.long_name });
    check('release from one of two accepted', r.status === 202, r);
    await statusText(page, (s) => s === 'Release: done.', 'release from one reported');
    mems = byName(await waitMemberships(page, (m) => byName(m)[P.long_name] && byName(m)[P.long_name].state === 'released', 'the membership shows released'));
    check('still held in the other quarantine', mems.virus.state === 'held' && mems.virus.release, mems);
    check('no action left where it was released', !mems[P.long_name].release, mems);

    reqs = await actionRequests(stale, 1, async () => {
      await stale.click(`[data-test=memberships] tr[data-quarantine="${P.long_name}"] [data-test=pvo-release]`);
      await confirmDialog(stale);
    });
    check('second release: refused with 409', reqs.length === 1 && reqs[0].status === 409, reqs);
    const want409 = `Release failed: ${apiErrorText(reqs[0].reply)}`;
    await stale.waitForSelector('[data-test=pvo-error]:not([hidden])');
    result.values.second_release = (await stale.textContent('[data-test=pvo-error]'));
    const staleMems = byName(await membershipRows(stale));
    check('second release: the page now shows the release made elsewhere', staleMems[P.long_name].state === 'released' &&
      !staleMems[P.long_name].release && staleMems.virus.state === 'held', staleMems);
    check('second release: the API\'s 409 text on the page', result.values.second_release === want409, [result.values.second_release, want409]);
    await statusText(stale, (s) => s === want409, 'second release: the 409 text in the status bar');
    await shot(stale, 'pvo-detail-409-en');
    await stale.close();
    // Still waiting (in virus), it stays in the first quarantine's list, marked released there.
    await page.goto(BASE + '/messages?quarantine=' + encodeURIComponent(P.long_name));
    await waitRows(page, (x) => x.length === 1, 'released here, held elsewhere: still listed');
    const badge = await page.$eval(`tr.msg-row[data-id="${P.invoice_id}"] .col-subject .badge[data-state]`, (e) => [e.dataset.state, e.textContent]).catch(() => null);
    check('the row is marked released in this quarantine', JSON.stringify(badge) === JSON.stringify(['released', 'Released']), badge);
    await page.goto(BASE + '/m/' + P.invoice_id);
    await membershipRows(page);

    r = await detailAction(page, P.invoice_id, 'release', 'virus', null, { quarantine: 'virus' });
    check('release from the last accepted', r.status === 202, r);
    check('release from the last: the recipients are on their way', (r.reply.recipients || []).every((x) => x.state === 'releasing' || x.state === 'released'), r.reply);
    await statusText(page, (s) => s === 'Released from every quarantine: the message is queued for delivery.', 'release from the last reported');
    mems = await waitMemberships(page, (m) => m.every((x) => x.state === 'released'), 'every membership shows released');
    check('no action left on a released message', mems.every((x) => !x.release), mems);
    await shot(page, 'pvo-detail-released-en');

    // ---- delay (in Japanese): the new expiry in the user's zone ----
    await page.goto(BASE + '/m/' + P.hr1_id);
    await membershipRows(page);
    await setLanguage(page, 'ja');
    mems = byName(await membershipRows(page));
    check('held until in Japanese format', mems.HR.expires === P.hr1_expires.before.ja, [mems.HR, P.hr1_expires]);
    check('section title in Japanese', (await page.textContent('#pvo-title')) === 'このメッセージの隔離領域');
    await shot(page, 'pvo-detail-ja');
    r = await detailAction(page, P.hr1_id, 'delay', 'HR', async () => {
      check('delay dialog in Japanese', (await page.textContent('dialog.dialog[open] .dialog-title')) === '保留期間の延長');
      await page.check('dialog.dialog[open] [data-test=delay-3d]');
      await shot(page, 'pvo-delay-dialog-ja');
    }, { quarantine: 'HR', by: '3d' });
    check('delay accepted', r.status === 200, r);
    await statusText(page, (s) => s === '保留期間の延長が完了しました。', 'delay reported in Japanese');
    mems = byName(await waitMemberships(page, (m) => byName(m).HR && byName(m).HR.expires === P.hr1_expires.after.ja, 'held until 3 days later, in Japanese'));
    check('still held after a delay', mems.HR.state === 'held', mems);
    await shot(page, 'pvo-detail-delayed-ja');
    await setLanguage(page, 'en');
    mems = byName(await membershipRows(page));
    check('held until 3 days later, in English', mems.HR.expires === P.hr1_expires.after.en, [mems.HR, P.hr1_expires]);
    // A duration the API refuses (over 366 days): its 422 text, the expiry unchanged.
    r = await detailAction(page, P.hr1_id, 'delay', 'HR', async () => {
      await page.fill('dialog.dialog[open] [data-test=delay-other]', '400d');
    }, { quarantine: 'HR', by: '400d' });
    check('delay by 400d: refused with 422', r.status === 422, r);
    await page.waitForSelector('[data-test=pvo-error]:not([hidden])');
    result.values.delay_422 = await page.textContent('[data-test=pvo-error]');
    check('delay by 400d: the API\'s 422 text on the page', result.values.delay_422 === `Delay exit failed: ${apiErrorText(r.reply)}`, [result.values.delay_422, r.reply]);
    mems = byName(await membershipRows(page));
    check('a refused delay changes nothing on the page', mems.HR.expires === P.hr1_expires.after.en, mems);
    // A cancelled action sends nothing.
    const none = await actionRequests(page, 0, async () => {
      await page.click('[data-test=memberships] tr[data-quarantine="HR"] [data-test=pvo-delete]');
      await page.waitForSelector('dialog.dialog[open]');
      await page.keyboard.press('Escape');
      await page.waitForSelector('dialog.dialog[open]', { state: 'detached' });
    });
    check('cancel sends nothing', none.length === 0, none);

    // ---- move: now in the other policy quarantine, with the same expiry ----
    await page.goto(BASE + '/m/' + P.hr2_id);
    await membershipRows(page);
    r = await detailAction(page, P.hr2_id, 'move', 'HR', async () => {
      const opts = await page.$$eval('dialog.dialog[open] [data-test=move-to] option', (els) => els.map((e) => e.value));
      check('move offers the other policy quarantines', JSON.stringify(opts.slice().sort()) === JSON.stringify(P.move_targets.slice().sort()), opts);
      await page.selectOption('dialog.dialog[open] [data-test=move-to]', 'Archive');
    }, { from: 'HR', to: 'Archive' });
    check('move accepted', r.status === 200, r);
    await statusText(page, (s) => s === 'Move: done.', 'move reported');
    mems = await waitMemberships(page, (m) => m.length === 1 && m[0].name === 'Archive', 'the message is now in Archive');
    check('moved: held, with its reason and the original expiry', mems[0].state === 'held' && mems[0].reason === 'HR rule' &&
      mems[0].expires === P.hr2_expires.en, [mems, P.hr2_expires]);
    await shot(page, 'pvo-detail-moved-en');

    // ---- settings: create (a bad duration first: the API's 422), edit a system one, delete ----
    await page.goto(BASE + '/quarantines');
    await overviewRows(page);
    await page.fill('[data-test=q-name]', 'Contracts');
    await page.fill('[data-test=q-delete-after]', 'a fortnight');
    await page.click('[data-test=q-submit]');
    await page.waitForSelector('[data-test=q-form-error]:not([hidden])');
    result.values.create_422 = await page.textContent('[data-test=q-form-error]');
    check('create: the API\'s 422 text shown', result.values.create_422.startsWith('The quarantine was not created: "delete_after" must be'), result.values.create_422);
    await page.fill('[data-test=q-delete-after]', '30d');
    await page.selectOption('[data-test=q-default-action]', 'release');
    await page.check('[data-test=q-exempt]');
    await page.check(`[data-test=q-operators] input[data-operator="${P.operator}"]`);
    await page.click('[data-test=q-submit]');
    await page.waitForSelector('tr[data-quarantine="Contracts"]');
    await statusText(page, (s) => s === 'The quarantine Contracts was created.', 'created');
    const cRow = await page.textContent('tr[data-quarantine="Contracts"]');
    check('new quarantine with its settings', cRow.includes('30d') && cRow.includes('Release') && cRow.includes(P.operator) && cRow.includes('Exempt'), cRow);
    // a taken name: the API's 409
    await page.fill('[data-test=q-name]', 'Finance');
    await page.click('[data-test=q-submit]');
    await page.waitForFunction(() => /exists/.test(document.querySelector('[data-test=q-form-error]').textContent));
    check('create: a taken name refused with the API\'s 409 text', (await page.textContent('[data-test=q-form-error]')).includes('a quarantine with this name exists'));

    // Edit a system quarantine: no delete button, settings saved.
    check('virus has no delete button', await page.locator('tr[data-quarantine="virus"] [data-test=q-delete]').count() === 0);
    await page.click('tr[data-quarantine="virus"] [data-test=q-edit]');
    check('edit form names the quarantine', (await page.textContent('[data-test=q-form-title]')) === 'Settings of virus');
    check('the name is not editable', await page.locator('[data-test=q-name]').getAttribute('readonly') !== null);
    await page.fill('[data-test=q-delete-after]', '21d');
    await page.click('[data-test=q-submit]');
    await statusText(page, (s) => s === 'The settings of virus were saved.', 'saved');
    await page.waitForFunction(() => (document.querySelector('tr[data-quarantine="virus"]') || {}).textContent.includes('21d'));

    // Delete: a quarantine that holds messages is refused (409), an empty one goes.
    await page.click('tr[data-quarantine="HR"] [data-test=q-delete]');
    await confirmDialog(page);
    result.values.delete_409 = await statusText(page, (s) => s.includes('the quarantine still holds messages'), 'delete refused with the API\'s 409 text');
    check('refused delete keeps the row', await page.locator('tr[data-quarantine="HR"]').count() === 1);
    await shot(page, 'pvo-settings-409-en');
    await page.fill('[data-test=q-name]', 'Legal 法務');
    await page.click('[data-test=q-submit]');
    await page.waitForSelector('tr[data-quarantine="Legal 法務"]');
    await page.click('tr[data-quarantine="Legal 法務"] [data-test=q-delete]');
    await page.waitForSelector('dialog.dialog[open]');
    await page.click('dialog.dialog[open] [data-test=dialog-cancel]');
    check('cancelled delete keeps it', await page.locator('tr[data-quarantine="Legal 法務"]').count() === 1);
    await page.click('tr[data-quarantine="Legal 法務"] [data-test=q-delete]');
    await confirmDialog(page);
    await page.waitForSelector('tr[data-quarantine="Legal 法務"]', { state: 'detached' });
    await setLanguage(page, 'ja');
    await overviewRows(page);
    await page.click('tr[data-quarantine="Contracts"] [data-test=q-edit]');
    check('edit title in Japanese', (await page.textContent('[data-test=q-form-title]')) === '「Contracts」の設定');
    await shot(page, 'pvo-settings-ja');
  } catch (e) {
    await shot(page, 'failure-' + scenario).catch(() => {});
    throw e;
  } finally {
    await b.close();
  }
}

// An operator assigned to one quarantine; an end user with none.
async function pvoOperator() {
  const b = await launch('ja-JP');
  const page = b.page;
  try {
    await login(page, P.username, P.password);
    check('operator has the Quarantines link', await page.locator('a.nav-link[href="/quarantines"]').count() === 1);
    await page.click('a.nav-link[href="/quarantines"]');
    const rows = await overviewRows(page);
    result.values.operator_overview = rows.map((r) => r.name).sort();
    check('operator sees only their quarantines', JSON.stringify(result.values.operator_overview) === JSON.stringify(P.visible), rows);
    const fin = rows.find((r) => r.name === 'Finance');
    check('operator\'s counts as the API', Number(fin.messages) === P.finance.messages && Number(fin.bytes) === P.finance.bytes, fin);
    check('operator has no settings', await page.locator('[data-test=q-form]').count() === 0 && !rows.some((r) => r.edit || r.del));
    await shot(page, 'pvo-operator-quarantines-ja');
    await page.click('tr[data-quarantine="Finance"] [data-test=q-link]');
    await waitRows(page, (r) => r.length === P.finance.messages, 'Finance listing');
    const actions = await page.$$eval('[data-test=pvo-action] option', (els) => els.map((e) => e.value));
    check('operator: no copy in the list actions', JSON.stringify(actions) === JSON.stringify(['release', 'delete', 'delay', 'move']), actions);
    await page.goto(BASE + '/m/' + P.finance_id);
    await page.waitForSelector('[data-test=memberships] tbody tr');
    check('operator: detail of their quarantine\'s message', (await page.textContent('[data-test=detail-subject]')) === P.finance_subject);
    check('operator: release offered', await page.locator('[data-test=pvo-release]').count() === 1);
    check('operator: no copy button', await page.locator('[data-test=pvo-copy]').count() === 0);
    const exp = await page.textContent('[data-test=memberships] tr[data-quarantine="Finance"] [data-test=pvo-expires] div');
    check('operator: held until in their own time zone', exp === P.finance_expires_ja, [exp, P.finance_expires_ja]);
    await shot(page, 'pvo-operator-detail-ja');
    // The operator acts in the quarantine assigned to them: released, it goes out.
    const r = await detailAction(page, P.finance_id, 'release', 'Finance', null, { quarantine: 'Finance' });
    check('operator: release accepted', r.status === 202, r);
    await statusText(page, (s) => s === 'すべての隔離領域から解放されたため、メッセージを配信します。', 'operator: release reported in Japanese');
    const mems = await waitMemberships(page, (m) => m.length === 1 && m[0].state === 'released', 'operator: the membership shows released');
    check('operator: nothing left to do on it', !mems[0].release, mems);
    await shot(page, 'pvo-operator-released-ja');
    // Another quarantine's message, by its URL: the API's 404, shown as not found.
    const answer = page.waitForResponse((res) => new URL(res.url()).pathname === '/api/v1/messages/' + P.hidden_id);
    await page.goto(BASE + '/m/' + P.hidden_id);
    const res404 = await answer;
    result.values.hidden_status = res404.status();
    check('operator: the API answers 404 for another quarantine\'s message', res404.status() === 404, res404.status());
    await page.waitForSelector('.detail p.empty');
    check('operator: another quarantine\'s message does not exist', (await page.textContent('.detail p.empty')) === 'このメッセージは存在しないか、閲覧できません。');
    check('operator: no memberships or actions shown for it', await page.locator('[data-test=memberships], [data-test^=pvo-]').count() === 0);
    await shot(page, 'pvo-operator-not-found-ja');
    await setLanguage(page, 'en');
    await page.goto(BASE + '/quarantines');
    await overviewRows(page);
    await shot(page, 'pvo-operator-quarantines-en');
  } finally {
    await b.close();
  }
  const c = await launch('ja-JP');
  try {
    await login(c.page, P.enduser, P.enduser_password);
    check('end user: no Quarantines link', await c.page.locator('a.nav-link[href="/quarantines"]').count() === 0);
    check('end user: no PVO message listed', (await rowSubjects(c.page)).length === 0);
    for (const id of P.enduser_pvo_ids) {
      await c.page.goto(BASE + '/m/' + id);
      await c.page.waitForSelector('.detail p.empty');
      check('end user: a PVO message does not exist', (await c.page.textContent('.detail p.empty')) === 'このメッセージは存在しないか、閲覧できません。');
      check('end user: no memberships shown', await c.page.locator('[data-test=memberships]').count() === 0);
    }
    await c.page.goto(BASE + '/quarantines');
    await c.page.waitForSelector('[data-test=not-found]');
    check('end user: the page does not exist', (await c.page.textContent('[data-test=not-found]')) === 'ページが見つかりません。');
    check('end user: nothing of the quarantines shown', await c.page.locator('[data-test=quarantines]').count() === 0);
    await shot(c.page, 'pvo-enduser-not-found-ja');
    await setLanguage(c.page, 'en');
    check('end user: not found in English', (await c.page.textContent('[data-test=not-found]')) === 'Page not found.');
    await shot(c.page, 'pvo-enduser-not-found-en');
  } finally {
    await c.close();
  }
}

// ---- the second factor ----

// RFC 6238 (HMAC-SHA1, 6 digits) of a base32 secret for a 30 s step.
function totpCode(secret, step) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', key).update(msg).digest();
  const off = mac[19] & 0x0f;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1000000).padStart(6, '0');
}

// The current step, waiting out a step's last seconds so that the manager agrees.
async function freshStep() {
  const into = (Date.now() / 1000) % 30;
  if (into > 25) await new Promise((r) => setTimeout(r, (30 - into) * 1000 + 300));
  return Math.floor(Date.now() / 1000 / 30);
}

// A 6-digit code that is none of secret's near steps.
function wrongCode(secret, step) {
  const near = new Set([-3, -2, -1, 0, 1, 2, 3].map((d) => totpCode(secret, step + d)));
  let n = 0;
  while (near.has(String(n).padStart(6, '0'))) n++;
  return String(n).padStart(6, '0');
}

async function passwordStep(page) {
  await page.goto(BASE + '/');
  await page.waitForURL(/\/login/);
  await page.fill('#login-username', P.username);
  await page.fill('#login-password', P.password);
  await page.click('[data-test=login-submit]');
}

async function signOut(page) {
  await page.click('[data-test=signout]');
  await page.waitForURL(/\/login/);
}

// Enrols from the settings (QR code, key, a wrong then a right code, the recovery
// codes), signs out, signs in with password and code (ja), then in English with
// a recovery code; screenshots in both languages.
async function totp() {
  const b = await launch('ja-JP');
  const page = b.page;
  try {
    await passwordStep(page);
    await page.waitForURL(/\/messages/);
    await page.click('a.nav-link[href="/settings"]');
    await page.waitForSelector('[data-test=totp-start]');
    check('ja: off', (await page.textContent('[data-test=totp-state]')) === '無効');
    await page.click('[data-test=totp-start]');
    await page.waitForSelector('[data-test=totp-qr] path');
    const secret = await page.getAttribute('[data-test=totp-secret]', 'data-secret');
    check('the key is base32', /^[A-Z2-7]{32}$/.test(secret), secret);
    const d = await page.getAttribute('[data-test=totp-qr] path', 'd');
    check('the QR code has modules', /^M\d+ \d+h1v1h-1z/.test(d) && d.length > 1000, d.slice(0, 40));
    const box = await page.locator('[data-test=totp-qr]').boundingBox();
    check('the QR code is drawn', box && box.width >= 150 && box.height >= 150, box);
    await shot(page, 'totp-enrol-ja');
    let s = await freshStep();
    await page.fill('[data-test=totp-code]', wrongCode(secret, s));
    await page.click('[data-test=totp-confirm]');
    await page.waitForSelector('[data-test=totp-error]:not([hidden])');
    result.values.enrol_error_ja = await page.textContent('[data-test=totp-error]');
    s = await freshStep();
    await page.fill('[data-test=totp-code]', totpCode(secret, s));
    await page.click('[data-test=totp-confirm]');
    await page.waitForSelector('[data-test=recovery-codes] li');
    const codes = await page.$$eval('[data-test=recovery-codes] li', (els) => els.map((e) => e.textContent));
    check('10 recovery codes', codes.length === 10 && new Set(codes).size === 10, codes);
    await shot(page, 'totp-recovery-ja');
    await page.click('[data-test=totp-done]');
    await page.waitForFunction(() => /^有効/.test((document.querySelector('[data-test=totp-state]') || {}).textContent || ''));
    result.values.state_ja = await page.textContent('[data-test=totp-state]');

    await signOut(page);
    await passwordStep(page);
    await page.waitForSelector('[data-test=login-code]');
    check('ja: code page', (await page.textContent('.login-title')) === '2 段階認証', await page.textContent('.login-title'));
    check('still on the sign-in page', new URL(page.url()).pathname === '/login', page.url());
    await shot(page, 'totp-login-ja');
    await page.fill('[data-test=login-code]', wrongCode(secret, s));
    await page.click('[data-test=login-code-submit]');
    await page.waitForSelector('[data-test=login-error]:not([hidden])');
    result.values.login_error_ja = await page.textContent('[data-test=login-error]');
    // A reload keeps the half sign-in: the code page comes back.
    await page.reload();
    await page.waitForSelector('[data-test=login-code]');
    const next = totpCode(secret, s + 1);
    await page.fill('[data-test=login-code]', next.slice(0, 3) + ' ' + next.slice(3));
    await page.click('[data-test=login-code-submit]');
    await page.waitForURL(/\/messages/);
    check('ja: signed in', (await page.textContent('[data-test=user-name]')) === P.username);

    await setLanguage(page, 'en');
    await page.click('a.nav-link[href="/settings"]');
    await page.waitForFunction(() => /^On since/.test((document.querySelector('[data-test=totp-state]') || {}).textContent || ''));
    result.values.state_en = await page.textContent('[data-test=totp-state]');
    await shot(page, 'totp-settings-en');
    await signOut(page);
    await passwordStep(page);
    await page.waitForSelector('[data-test=login-code]');
    check('en: code page', (await page.textContent('.login-title')) === 'Two-step verification', await page.textContent('.login-title'));
    await shot(page, 'totp-login-en');
    await page.fill('[data-test=login-code]', wrongCode(secret, s));
    await page.click('[data-test=login-code-submit]');
    await page.waitForSelector('[data-test=login-error]:not([hidden])');
    result.values.login_error_en = await page.textContent('[data-test=login-error]');
    await page.fill('[data-test=login-code]', codes[0]);
    await page.click('[data-test=login-code-submit]');
    await page.waitForURL(/\/messages/);
    check('en: signed in with a recovery code', (await page.textContent('[data-test=user-name]')) === P.username);
    result.values.recovery_code = codes[0];
  } finally {
    await b.close();
  }
}

// The Tracking page (admins): rows of the result table as {id, gateway, subject}.
async function trackingRows(page, pred, what) {
  const deadline = Date.now() + TIMEOUT;
  let last;
  while (Date.now() < deadline) {
    last = await page.$$eval('[data-test=tracking] tbody tr.msg-row', (rows) => rows.map((r) => ({
      id: r.dataset.id, gateway: r.dataset.gateway,
      subject: r.querySelector('[data-test=tracking-subject]').textContent,
    }))).catch(() => null);
    if (last && pred(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new Error('timed out waiting for ' + what + ': ' + JSON.stringify(last));
}

function trackingUrl(params) {
  return BASE + '/tracking?' + new URLSearchParams(params).toString();
}

// One message's story as the page shows it: the timeline's rows.
async function timelineRows(page) {
  await page.waitForSelector('[data-test=timeline] tbody tr');
  return page.$$eval('[data-test=timeline] tbody tr', (rows) => rows.map((r) => ({
    gateway: r.dataset.gateway, type: r.dataset.type, label: r.querySelector('[data-test=tl-type]').textContent,
    at: r.querySelector('time').getAttribute('datetime'), time: r.querySelector('time').textContent,
    fields: Object.fromEntries([...r.querySelectorAll('.ev-field')].map((f) => [f.dataset.field, f.querySelector('.ev-value').textContent])),
  })));
}

async function noMarkupRan(page, where) {
  check(where + ': no element injected', await page.locator('main img, main script').count() === 0);
  check(where + ': no payload ran', await page.evaluate(() => window.__lazaretPwned === undefined));
}

// Search (Japanese subject, event types, "more" pages, the API's 400s), a relayed
// message's story across both gateways, markup as text, ja and en; an operator and
// an end user get no link and the API's 403.
async function tracking() {
  const b = await launch('ja-JP');
  const page = b.page;
  try {
    await login(page, P.admin[0], P.admin[1]);
    await setLanguage(page, 'ja');
    const nav = page.locator('a.nav-link[href="/tracking"]');
    check('admin has the Tracking link (ja)', await nav.count() === 1 && (await nav.textContent()) === 'メッセージ追跡');
    await nav.click();
    await page.waitForURL((u) => new URL(u).pathname === '/tracking');
    check('page title (ja)', (await page.textContent('h1.page-title')) === 'メッセージ追跡');
    const all = await trackingRows(page, (r) => r.length === P.total, 'every tracked message');
    check('the markup subject listed as text', all.some((r) => r.subject === P.xss_subject), all);
    await noMarkupRan(page, 'list');

    // a Japanese subject, begins with
    await page.fill('#tr-subject', P.jp_search);
    await page.selectOption('#tr-subject_op', 'begins');
    await page.click('[data-test=tracking-submit]');
    await page.waitForURL((u) => new URL(u).searchParams.get('subject') === P.jp_search && new URL(u).searchParams.get('subject_op') === 'begins');
    const jp = await trackingRows(page, (r) => r.length === 1, 'the Japanese subject');
    check('Japanese subject found', jp[0].subject === P.jp_subject && jp[0].id === P.jp_id, jp);
    check('the form keeps the search', await page.inputValue('#tr-subject') === P.jp_search && await page.inputValue('#tr-subject_op') === 'begins');
    await shot(page, 'tracking-search-ja');
    await page.click('[data-test=tracking-subject]');
    await page.waitForURL((u) => new URL(u).pathname === '/tracking/message' && new URL(u).searchParams.get('id') === P.jp_id);
    await page.waitForSelector('[data-test=tracking-detail-subject]');
    check('detail: Japanese subject', (await page.textContent('[data-test=tracking-detail-subject]')) === P.jp_subject);
    check('detail: Japanese Subject header decoded', (await page.textContent('[data-test=tr-h-subject]')) === P.jp_subject);
    await page.goBack();
    await trackingRows(page, (r) => r.length === 1 && r[0].id === P.jp_id, 'the search again after Back');

    // event types, ticked
    await page.click('[data-test=tracking-clear]');
    await trackingRows(page, (r) => r.length === P.total, 'every message after Clear');
    await page.check('#tr-ev-quarantined');
    await page.check('#tr-ev-virus');
    await page.click('[data-test=tracking-submit]');
    await page.waitForURL((u) => new URL(u).searchParams.get('event') === 'virus,quarantined');
    const q = await trackingRows(page, (r) => r.length === 2, 'the quarantined message');
    check('quarantined: on gw-a and on the manager', q.every((r) => r.subject === 'Win') && q.map((r) => r.gateway).sort().join() === 'gw-a,manager', q);
    check('ticked boxes kept', await page.isChecked('#tr-ev-quarantined') && await page.isChecked('#tr-ev-virus') && !(await page.isChecked('#tr-ev-spam')));

    // a time range, in the browser's zone (Asia/Tokyo)
    await page.click('[data-test=tracking-clear]');
    await trackingRows(page, (r) => r.length === P.total, 'every message after Clear');
    await page.fill('#tr-until', '2000-01-01T09:00');
    await page.click('[data-test=tracking-submit]');
    await page.waitForURL((u) => new URL(u).searchParams.get('until') === '2000-01-01T00:00:00Z');
    await page.waitForSelector('[data-test=tracking-empty]');
    check('nothing received before 2000', await page.locator('[data-test=tracking] tr.msg-row').count() === 0);
    await page.fill('#tr-until', '');
    await page.fill('#tr-since', '2000-01-01T09:00');
    await page.click('[data-test=tracking-submit]');
    await page.waitForURL((u) => new URL(u).searchParams.get('since') === '2000-01-01T00:00:00Z' && !new URL(u).searchParams.has('until'));
    await trackingRows(page, (r) => r.length === P.total, 'everything received since 2000');

    // "more" follows next_cursor
    await page.goto(trackingUrl({ subject: 'page ', subject_op: 'begins', limit: '3' }));
    await trackingRows(page, (r) => r.length === 3, 'the first page');
    const seen = [];
    for (const n of [6, 7]) {
      check('more offered before ' + n, await page.isVisible('[data-test=tracking-more]'));
      await page.click('[data-test=tracking-more]');
      seen.splice(0, seen.length, ...await trackingRows(page, (r) => r.length === n, n + ' rows'));
    }
    check('every page once', JSON.stringify(seen.map((r) => r.subject).sort()) === JSON.stringify(P.pages) && new Set(seen.map((r) => r.id)).size === 7, seen);
    check('no more after the last page', await page.isHidden('[data-test=tracking-more]'));
    check('count shown', (await page.textContent('[data-test=tracking-count]')) === '7 件を表示');

    // the API's 400, as it says it
    await page.click('[data-test=tracking-clear]');
    await trackingRows(page, (r) => r.length === P.total, 'every message');
    await page.fill('#tr-sender', 'あ'.repeat(400));
    await page.click('[data-test=tracking-submit]');
    await page.waitForSelector('[data-test=tracking-error]:not([hidden])');
    result.values.bad_sender_ja = await page.textContent('[data-test=tracking-error]');
    check('no rows for a refused search', await page.locator('[data-test=tracking] tr.msg-row').count() === 0);
    await shot(page, 'tracking-error-ja');

    // a relayed message: one row per gateway, one story
    await page.goto(trackingUrl({ subject: P.relayed_subject, subject_op: 'is' }));
    const rel = await trackingRows(page, (r) => r.length === 2, 'the relayed message');
    check('relayed: a row per gateway', rel.map((r) => r.gateway).sort().join() === 'gw-a,gw-b', rel);
    await page.click(`[data-test=tracking] tr[data-gateway="gw-b"] [data-test=tracking-subject]`);
    await page.waitForURL((u) => new URL(u).searchParams.get('id') === P.relayed_id);
    const tl = await timelineRows(page);
    check('timeline: every event of both gateways, in the API\'s order',
      JSON.stringify(tl.map((e) => [e.gateway, e.type])) === JSON.stringify(P.relayed_timeline), tl);
    check('timeline: in time order', tl.every((e, i) => i === 0 || tl[i - 1].at <= e.at), tl.map((e) => e.at));
    check('timeline: both gateways named', (await page.textContent('[data-test=tl-gateways]')).includes('gw-a') && (await page.textContent('[data-test=tl-gateways]')).includes('gw-b'));
    const deliveries = tl.filter((e) => e.type === 'delivery');
    check('timeline: each gateway delivered, with the reply', deliveries.length === 2 &&
      deliveries.map((e) => e.gateway).sort().join() === 'gw-a,gw-b' &&
      deliveries.every((e) => e.fields.status === '送信済み' && /^250 /.test(e.fields.reply) && e.label === '配送'), deliveries);
    const received = tl.filter((e) => e.type === 'received');
    check('timeline: received on both', received.length === 2 && received.map((e) => e.gateway).sort().join() === 'gw-a,gw-b', received);
    check('timeline: times with seconds', tl.every((e) => /\d\d:\d\d:\d\d$/.test(e.time)), tl.map((e) => e.time));
    check('sending host: HELO', (await page.textContent('[data-test=tr-helo]')) === P.helo);
    check('sending host: client IP', (await page.textContent('[data-test=tr-client-ip]')) === P.client_ip);
    check('headers: subject', (await page.textContent('[data-test=tr-h-subject]')) === P.relayed_subject);
    check('envelope: sender', (await page.textContent('[data-test=tr-sender]')) === 'erin@sender.test');
    await page.click('[data-test=tl-event][data-type=delivery] details summary');
    check('all fields of an event, as JSON text', (await page.locator('[data-test=tl-event][data-type=delivery] pre.ev-json').first().textContent()).includes('"status": "sent"'));
    await page.evaluate(() => window.scrollTo(0, 0)); // the sticky header at the top of the shot
    await shot(page, 'tracking-detail-ja');

    await setLanguage(page, 'en');
    const tlEn = await timelineRows(page);
    check('en: Timeline heading', (await page.textContent('#tl-title')) === 'Timeline');
    check('en: event labels', tlEn.filter((e) => e.type === 'delivery').every((e) => e.label === 'Delivery' && e.fields.status === 'sent'), tlEn);
    check('en: envelope heading', (await page.textContent('#tr-envelope')) === 'Envelope');
    await shot(page, 'tracking-detail-en');
    // the same mail on gw-a: its own story, the same events
    await page.locator('[data-test=tl-other-link]').first().click();
    await page.waitForURL((u) => new URL(u).searchParams.get('id') === P.relayed_other_id);
    await page.waitForSelector('[data-test=tr-envelope] .gw-tag');
    await page.waitForFunction(() => (document.querySelector('[data-test=tr-envelope] .gw-tag') || {}).textContent === 'gw-a');
    const tlA = await timelineRows(page);
    check('gw-a\'s story has the same events', JSON.stringify(tlA.map((e) => [e.gateway, e.type])) === JSON.stringify(P.relayed_timeline), tlA);

    await page.goto(trackingUrl({ subject: P.relayed_subject, subject_op: 'is' }));
    await trackingRows(page, (r) => r.length === 2, 'the relayed message (en)');
    check('en: page title', (await page.textContent('h1.page-title')) === 'Message tracking');
    check('en: a state in English', (await page.textContent('[data-test=tracking] tbody')).includes('Delivered'));
    await shot(page, 'tracking-search-en');
    await page.goto(trackingUrl({ since: 'yesterday' }));
    await page.waitForSelector('[data-test=tracking-error]:not([hidden])');
    result.values.bad_since_en = await page.textContent('[data-test=tracking-error]');

    // the spam: gw-a's verdict and the manager's quarantine in one timeline
    await page.goto(BASE + '/tracking/message?id=' + encodeURIComponent(P.spam_id));
    const tlSpam = await timelineRows(page);
    const verdict = tlSpam.find((e) => e.gateway === 'gw-a' && e.type === 'verdict');
    check('spam: the verdict and its score', verdict && verdict.fields.level === 'spam' && Number(verdict.fields.score.replace(/,/g, '')) >= 5, tlSpam);
    const held = tlSpam.find((e) => e.gateway === 'manager' && e.type === 'quarantine');
    check('spam: quarantined on the manager, by name', held && held.fields.quarantine === 'spam' && held.label === 'Quarantined', tlSpam);

    // markup in a subject and an attachment name: text
    await page.goto(BASE + '/tracking/message?id=' + encodeURIComponent(P.xss_id));
    await page.waitForSelector('[data-test=tracking-detail-subject]');
    check('markup subject shown as text', (await page.textContent('[data-test=tracking-detail-subject]')) === P.xss_subject);
    check('markup Subject header shown as text', (await page.textContent('[data-test=tr-h-subject]')) === P.xss_subject);
    check('markup attachment name shown as text', (await page.textContent('[data-test=tr-attachments] li')) === P.xss_attachment);
    check('the page title is text too', (await page.title()).startsWith(P.xss_subject));
    await noMarkupRan(page, 'detail');
    await shot(page, 'tracking-xss-en');
  } finally {
    await b.close();
  }

  // an operator and an end user: no link; the page asks the API and shows its 403
  result.values.forbidden = {};
  for (const [user, password] of P.others) {
    const o = await launch('en-US');
    try {
      await login(o.page, user, password);
      check(user + ': no Tracking link', await o.page.locator('a.nav-link[href="/tracking"]').count() === 0);
      await o.page.goto(BASE + '/tracking');
      await o.page.waitForSelector('[data-test=tracking-forbidden]');
      check(user + ': no search form', await o.page.locator('[data-test=tracking-form]').count() === 0);
      result.values.forbidden[user] = await o.page.textContent('[data-test=tracking-forbidden] .muted');
      await shot(o.page, 'tracking-forbidden-' + user);
      await o.page.goto(BASE + '/tracking/message?id=' + encodeURIComponent(P.relayed_id));
      await o.page.waitForSelector('[data-test=tracking-forbidden]');
      check(user + ': no story either', await o.page.locator('[data-test=timeline]').count() === 0);
    } finally {
      await o.close();
    }
  }
}

// Single sign-on: the login button (both languages) to the provider and back,
// signed in as the provider's user; a refused login shows why.
async function oidc() {
  for (const [locale, lang] of [['ja-JP', 'ja'], ['en-US', 'en']]) {
    const b = await launch(locale);
    try {
      await b.page.goto(BASE + '/messages');
      await b.page.waitForURL(/\/login/);
      await b.page.waitForSelector('[data-test=login-oidc]');
      result.values[`button_${lang}`] = await b.page.textContent('[data-test=login-oidc]');
      await shot(b.page, `oidc-login-${lang}`);
      await b.page.click('[data-test=login-oidc]');
      await b.page.waitForURL(/\/messages/);
      await b.page.waitForSelector('[data-test=user-name]');
      const who = await b.page.textContent('[data-test=user-name]');
      check(`${lang}: signed in as the provider's user`, who === P.address, who);
      await shot(b.page, `oidc-signed-in-${lang}`);
      // the state is spent: going back to the callback is refused with a reason
      const again = await b.page.goto(BASE + '/auth/oidc/callback?code=x&state=' + 'A'.repeat(43));
      check(`${lang}: a stale callback answers 401`, again.status() === 401, again.status());
      const why = await b.page.textContent('#reason');
      check(`${lang}: the page says why`, /already been used/.test(why), why);
    } finally {
      await b.close();
    }
  }
}

// The Levels page (admins): which gateways are in which group and cluster, what
// each level sets, what each gateway ends up with and from where, what it says it
// runs with; a change refused with the server's 409 message, one saved; ja and en.
async function levels() {
  const b = await launch('ja-JP');
  const page = b.page;
  const levelRow = (id) => page.locator(`[data-test=levels] tr[data-level="${id}"]`);
  const gwRow = (name) => page.locator(`[data-test=level-gateways] tr[data-gateway="${name}"]`);
  try {
    await login(page, P.username, P.password);
    await setLanguage(page, 'ja');
    check('admin has the Levels link', await page.locator('a.nav-link[href="/levels"]').count() === 1);
    await page.click('a.nav-link[href="/levels"]');
    await page.waitForSelector('[data-test=levels] tr[data-level="cluster/c1"]');
    check('page title in Japanese', (await page.textContent('h1.page-title')) === 'レベル');
    const members = await levelRow('cluster/c1').locator('[data-test=members]').textContent();
    check('the cluster lists its gateways', members === 'gw-a, gw-b, gw-c', members);
    const g1 = await levelRow('group/g1').locator('[data-test=members]').textContent();
    check('the group lists its gateways and the pending one', g1 === 'gw-a, gw-b （保留中: gw-p）', g1);
    const pvo = await levelRow('cluster/c1').locator('[data-test=set-pvo]').textContent();
    check('what the cluster sets', pvo === '集約', pvo);
    const filters = await levelRow('group/g2').locator('[data-test=set-filters]').textContent();
    check('filters set at a group', filters === 'ルール 1 行', filters);
    const effPvo = await gwRow('gw-a').locator('[data-test=eff-pvo]').textContent();
    check('what gw-a ends up with, and from where', effPvo === '集約クラスター c1 から', effPvo);
    const effFilters = await gwRow('gw-a').locator('[data-test=eff-filters]').textContent();
    check('what no level sets stays the gateway\'s', effFilters === '—ゲートウェイ自身の設定', effFilters);
    const running = await gwRow('gw-a').locator('[data-test=running]').textContent();
    check('what gw-a says it runs with', running === 'PVO 隔離', running);
    await shot(page, 'levels-ja');

    // gw-a may not override its cluster's pvo: the server's message
    await page.selectOption('#l-kind', 'machine');
    await page.fill('#l-name', 'gw-a');
    await page.selectOption('#l-pvo', 'off');
    await page.click('[data-test=save-level]');
    await page.waitForSelector('#status.status-error:not([hidden])');
    const err = await page.textContent('#status');
    check('override refused with the server message', err.includes('"pvo" is set at cluster "c1", which gateway "gw-a" belongs to'), err);
    result.values.conflict = err;
    await shot(page, 'levels-conflict-ja');

    // tracking for group g1, from the row's edit button
    await levelRow('group/g1').locator('[data-test=edit-level]').click();
    check('form filled from the row', await page.inputValue('#l-name') === 'g1' && await page.inputValue('#l-kind') === 'group');
    await page.selectOption('#l-tracking', 'on');
    await page.click('[data-test=save-level]');
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-test=levels] tr[data-level="group/g1"] [data-test=set-tracking]');
      return c && c.textContent === '集約';
    });
    const effTracking = await gwRow('gw-b').locator('[data-test=eff-tracking]').textContent();
    check('gw-b gets tracking from its group', effTracking === '集約グループ g1 から', effTracking);
    await shot(page, 'levels-saved-ja');

    // move gw-c from group g2 to g1: it gets g1's tracking, and no longer g2's filters
    await gwRow('gw-c').locator('[data-test=move-gateway]').click();
    await page.waitForSelector('dialog.dialog[open]');
    check('the dialog shows its group', await page.inputValue('[data-test=move-group]') === 'g2');
    await page.fill('[data-test=move-group]', 'g1');
    await page.click('[data-test=dialog-confirm]');
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-test=level-gateways] tr[data-gateway="gw-c"] [data-test=eff-tracking]');
      return c && c.textContent === '集約グループ g1 から';
    });
    const moved = await gwRow('gw-c').locator('[data-test=eff-filters]').textContent();
    check('gw-c leaves the filters of g2 behind', moved === '—ゲートウェイ自身の設定', moved);
    await shot(page, 'levels-moved-ja');

    await setLanguage(page, 'en');
    await page.waitForSelector('[data-test=levels] tr[data-level="cluster/c1"]');
    check('page title in English', (await page.textContent('h1.page-title')) === 'Levels');
    const enEff = await gwRow('gw-a').locator('[data-test=eff-pvo]').textContent();
    check('resolution in English', enEff === 'Centralfrom Cluster c1', enEff);
    await shot(page, 'levels-en');
  } finally {
    await b.close();
  }
}

// SAML: the sign-in page's SAML button, the provider's auto-posting form (another
// site), and the portal signed in with the user's mail only.
async function saml() {
  const b = await launch('ja-JP');
  const page = b.page;
  try {
    await page.goto(BASE + '/');
    await page.waitForURL(/\/login/);
    await page.waitForSelector('[data-test=login-saml]');
    check('SAML button in Japanese', (await page.textContent('[data-test=login-saml]')).includes('SAML'));
    await shot(page, 'saml-login-ja');
    await page.click('[data-test=login-saml]');
    await page.waitForURL(/\/messages/);
    const subjects = await waitRows(page, (s) => s.length > 0, 'the user\'s messages');
    check('only own messages', JSON.stringify(subjects.slice().sort()) === JSON.stringify(P.own_subjects.slice().sort()), subjects);
    check('end user has no Users link', await page.locator('a.nav-link[href="/users"]').count() === 0);
    await shot(page, 'saml-enduser-list-ja');
    await page.reload();
    await page.waitForSelector('[data-test=messages] tbody tr.msg-row');
    check('still signed in after a reload', /\/messages/.test(page.url()), page.url());
  } catch (e) {
    await shot(b.page, 'failure-' + scenario).catch(() => {});
    throw e;
  } finally {
    await b.close();
  }
}

// The Reports pages (admins): the overview's totals, series and top domains as the
// API counts them, the gateway picker, the CSV link, a report's table and bar chart,
// the period picker with a custom range, a key that is markup shown as text; ja, en.
const fmt = (n) => new Intl.NumberFormat('en-GB').format(n);
const TOTAL_KEYS = ['incoming', 'clean', 'spam', 'suspect', 'virus', 'content_filter', 'rejected_connections'];

async function reportTotals(page) {
  return page.$$eval('[data-test=totals] [data-total]', (els) => Object.fromEntries(
    els.map((e) => [e.dataset.total, e.querySelector('.report-tile-value').textContent])));
}

async function waitTotal(page, incoming) {
  await page.waitForFunction((want) => {
    const c = document.querySelector('[data-test=totals] [data-total=incoming] .report-tile-value');
    return c && c.textContent === want && document.querySelector('.report-content').getAttribute('aria-busy') === 'false';
  }, incoming);
}

async function reportRows(page) {
  return page.$$eval('[data-test=report-rows] tbody tr[data-key]', (trs) => trs.map((tr) =>
    [tr.querySelector('th').textContent, ...[...tr.querySelectorAll('td')].map((td) => td.textContent)]));
}

async function downloadText(page, which = 'csv') {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(`[data-test=${which}]`)]);
  const path = await dl.path();
  const { readFileSync } = await import('node:fs');
  return { name: dl.suggestedFilename(), text: readFileSync(path, 'latin1') };
}

function wantRows(rows) {
  return rows.map((r) => [r[0], ...r.slice(1).map(fmt)]);
}

const sortRows = (rows) => rows.slice().sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

async function reports() {
  const b = await launch('ja-JP');
  const page = b.page;
  try {
    await login(page, P.admin[0], P.admin[1]);
    await setLanguage(page, 'ja');
    check('admin has the Reports link', await page.locator('a.nav-link[href="/reports"]').count() === 1);
    await page.click('a.nav-link[href="/reports"]');
    await waitTotal(page, fmt(P.totals[''].incoming));
    check('page title in Japanese', (await page.textContent('h1.page-title')) === 'レポート');
    const tiles = await reportTotals(page);
    check('the totals tiles are the API\'s totals', JSON.stringify(tiles) === JSON.stringify(Object.fromEntries(TOTAL_KEYS.map((k) => [k, fmt(P.totals[''][k])]))), tiles);
    check('numbers formatted for the locale', tiles.incoming === '1,208', tiles.incoming);
    check('tile labels in Japanese', (await page.textContent('[data-total=spam] .report-tile-label')) === 'スパム');
    // the series table: one row per hour of the day, the non-zero ones as the API says
    const series = await page.$$eval('[data-test=series-rows] tbody tr', (trs) => trs.map((tr) =>
      [tr.dataset.at, tr.querySelector('[data-col=incoming]').textContent]));
    check('24 hourly buckets', series.length === 24, series.length);
    const nonzero = Object.fromEntries(series.filter(([, n]) => n !== '0'));
    check('the series rows are the API\'s', JSON.stringify(nonzero) === JSON.stringify(Object.fromEntries(Object.entries(P.series['']).map(([k, v]) => [k, fmt(v)]))), nonzero);
    const chart = page.locator('svg[data-test=series-chart]');
    const label = await chart.getAttribute('aria-label');
    check('the series chart is labelled', label && label.includes('24') && await chart.getAttribute('role') === 'img', label);
    const chartTitle = await chart.evaluate((e) => e.firstElementChild.tagName + ':' + e.firstElementChild.textContent);
    check('the series chart has a title', chartTitle === 'title:' + label, chartTitle);
    check('a line per counter', await chart.locator('polyline').count() === 4);
    const top = await reportRows(page);
    check('the top domains table', JSON.stringify(sortRows(top)) === JSON.stringify(sortRows(wantRows(P.domains['']))), top);
    check('a bar per domain', await page.locator('svg[data-test=bar-chart] g[data-key]').count() === P.domains[''].length);
    const xssRow = await page.locator('[data-test=report-rows] tr[data-key]').filter({ hasText: 'onerror' }).locator('th').textContent();
    check('a domain that is markup is shown as text', xssRow === P.xss, xssRow);
    const xssBar = await page.locator('svg[data-test=bar-chart] text.chart-label').filter({ hasText: 'onerror' }).textContent();
    check('and as text in the chart', xssBar === P.xss, xssBar);
    await noMarkupRan(page, 'overview');
    await shot(page, 'reports-overview-ja');

    // another gateway: other numbers, in the address bar and the CSV link
    await page.selectOption('#rep-gateway', 'gw-b');
    await waitTotal(page, fmt(P.totals['gw-b'].incoming));
    const gwb = await reportTotals(page);
    check('gw-b\'s totals', JSON.stringify(gwb) === JSON.stringify(Object.fromEntries(TOTAL_KEYS.map((k) => [k, fmt(P.totals['gw-b'][k])]))), gwb);
    const gwbTop = await reportRows(page);
    check('gw-b\'s top domains', JSON.stringify(sortRows(gwbTop)) === JSON.stringify(sortRows(wantRows(P.domains['gw-b']))), gwbTop);
    check('the gateway in the address', new URL(page.url()).searchParams.get('gateway') === 'gw-b', page.url());
    const href = await page.getAttribute('[data-test=csv]', 'href');
    check('the CSV link has the same query', href === '/api/v1/reports/overview?period=day&gateway=gw-b&format=csv', href);
    const csv = await downloadText(page);
    check('the CSV download is the API\'s CSV', csv.text === P.csv_overview_gwb, csv.text.slice(0, 200));
    check('the CSV file name', csv.name === 'overview-day-gw-b.csv', csv.name);
    const pdfHref = await page.getAttribute('[data-test=pdf]', 'href');
    check('the PDF link has the same query', pdfHref === '/api/v1/reports/overview?period=day&gateway=gw-b&format=pdf', pdfHref);
    const pdf = await downloadText(page, 'pdf');
    check('the PDF download is a PDF', pdf.text.startsWith('%PDF-'), pdf.text.slice(0, 20));
    check('the PDF file name', /^lazaret-overview-day-gw-b-\d{8}\.pdf$/.test(pdf.name), pdf.name);
    await shot(page, 'reports-overview-gwb-ja');

    // a report page, all gateways again; then a period with nothing, then a custom range
    await page.selectOption('#rep-gateway', '');
    await waitTotal(page, fmt(P.totals[''].incoming));
    await page.click('a.report-tab[data-report=incoming_domains]');
    await page.waitForURL(/\/reports\/incoming_domains/);
    await page.waitForSelector('.report-content[aria-busy=false] [data-test=report-rows]');
    check('report title', (await page.textContent('[data-test=report-title]')) === '送信元ドメイン');
    const rows = await reportRows(page);
    check('the report\'s rows', JSON.stringify(sortRows(rows)) === JSON.stringify(sortRows(wantRows(P.domains['']))), rows);
    check('the key column in Japanese', (await page.textContent('[data-test=report-rows] thead th')) === '送信元ドメイン');
    const bars = await page.$$eval('svg[data-test=bar-chart] g[data-key]', (gs) => gs.map((g) => [g.dataset.key, g.querySelector('text.chart-value').textContent]));
    check('the bar chart has the rows, most first', JSON.stringify(bars) === JSON.stringify(rows.map((r) => [r[0], r[1]])), bars);
    await noMarkupRan(page, 'incoming domains');
    await shot(page, 'reports-domains-ja');
    await page.selectOption('#rep-period', 'prev_day');
    await page.waitForSelector('.report-content[aria-busy=false] [data-test=report-rows] td.empty');
    check('yesterday has nothing', (await page.textContent('[data-test=report-rows] td.empty')) === 'この期間のデータはありません。');
    await page.selectOption('#rep-period', 'custom');
    const [since, until] = await page.evaluate(() => {
      const pad = (x) => String(x).padStart(2, '0');
      const f = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
      return [f(new Date(Date.now() - 3 * 3600000)), f(new Date(Date.now() + 3600000))];
    });
    // the end before the start: the server's 400, as it says it
    await page.fill('#rep-since', until);
    await page.fill('#rep-until', since);
    await page.click('[data-test=apply]');
    await page.waitForSelector('[data-test=report-error]');
    const bad = await page.textContent('[data-test=report-error]');
    check('a range that ends first is refused', bad === 'レポートを表示できませんでした: "until" must be after "since"', bad);
    await page.fill('#rep-since', since);
    await page.fill('#rep-until', until);
    await page.click('[data-test=apply]');
    await page.waitForFunction(() => document.querySelectorAll('.report-content[aria-busy=false] [data-test=report-rows] tr[data-key]').length > 0);
    const custom = await reportRows(page);
    check('a custom range has the rows', JSON.stringify(sortRows(custom)) === JSON.stringify(sortRows(wantRows(P.domains['']))), custom);
    const cq = new URL(page.url()).searchParams;
    check('the custom range in the address', cq.get('period') === 'custom' && /Z$/.test(cq.get('since')) && /Z$/.test(cq.get('until')), page.url());
    await shot(page, 'reports-custom-ja');

    // English: the overview again, and a report's CSV
    await page.selectOption('#rep-period', 'day');
    await page.click('a.report-tab[data-report=overview]');
    await page.waitForURL(/\/reports\?/);
    await setLanguage(page, 'en');
    await waitTotal(page, fmt(P.totals[''].incoming));
    check('page title in English', (await page.textContent('h1.page-title')) === 'Reports');
    check('tile label in English', (await page.textContent('[data-total=rejected_connections] .report-tile-label')) === 'Rejected connections');
    check('period names in English', (await page.textContent('#rep-period option[value=prev_month]')) === 'Last month');
    await shot(page, 'reports-overview-en');
    await page.click('a.report-tab[data-report=internal_users]');
    await page.waitForSelector('.report-content[aria-busy=false] [data-test=report-rows] tr[data-key]');
    const users = (await reportRows(page)).map((r) => r[0]).sort();
    check('internal users', JSON.stringify(users) === JSON.stringify(P.users), users);
    await page.click('a.report-tab[data-report=incoming_domains]');
    await page.waitForSelector('.report-content[aria-busy=false] [data-test=report-rows] tr[data-key]');
    const dcsv = await downloadText(page);
    check('the report\'s CSV download', dcsv.text === P.csv_domains, dcsv.text.slice(0, 200));
    await page.click('a.report-tab[data-report=internal_users]');
    await page.waitForSelector('.report-content[aria-busy=false] [data-test=report-rows] tr[data-key]');
    await shot(page, 'reports-users-en');

    // system capacity: the gateways' samples, JSON's totals, CSV and PDF links
    await page.click('a.report-tab[data-report=system_capacity]');
    await page.waitForURL(/\/reports\/system_capacity/);
    await page.waitForSelector('.report-content[aria-busy=false] [data-total=messages_in]');
    const cap = await reportTotals(page);
    check('capacity: messages in as the API says', cap.messages_in === fmt(P.capacity.messages_in) && P.capacity.messages_in === 7, cap);
    check('capacity: load with two decimals', cap.load_max === '0.75' && cap.load_avg === '0.75', cap);
    check('capacity: memory in MiB', cap.memory_max === '50 MiB', cap.memory_max);
    check('capacity: tile label in English', (await page.textContent('[data-total=messages_out] .report-tile-label')) === 'Messages relayed');
    check('capacity: 24 hourly rows', await page.locator('[data-test=series-rows] tbody tr').count() === 24);
    const cpdf = await page.getAttribute('[data-test=pdf]', 'href');
    check('capacity: the PDF link', cpdf === '/api/v1/reports/system_capacity?period=day&format=pdf', cpdf);
    const ccsv = await downloadText(page);
    check('capacity: the CSV download', ccsv.text === P.csv_capacity, ccsv.text.slice(0, 200));
    await shot(page, 'reports-capacity-en');
  } catch (e) {
    await shot(b.page, 'failure-' + scenario).catch(() => {});
    throw e;
  } finally {
    await b.close();
  }
  // an operator has no Reports link, and the page is for administrators
  const o = await launch('en-GB');
  try {
    await o.page.goto(BASE + '/');
    await o.page.waitForURL(/\/login/);
    await o.page.fill('#login-username', P.operator[0]);
    await o.page.fill('#login-password', P.operator[1]);
    await o.page.click('[data-test=login-submit]');
    await o.page.waitForURL(/\/messages/);
    check('operator has no Reports link', await o.page.locator('a.nav-link[href="/reports"]').count() === 0);
    await o.page.goto(BASE + '/reports');
    await o.page.waitForSelector('main p.empty');
    check('the page is for administrators', await o.page.locator('[data-test=totals]').count() === 0);
  } finally {
    await o.close();
  }
}

// Scheduled reports in the Reports section: a schedule created from the form (a
// bad zone refused with the server's message first), edited from its row, sent
// now (the archive lists the copy with a download link that gives the document),
// deleted after a confirmation; ja and en.
async function schedules() {
  const b = await launch('ja-JP');
  const page = b.page;
  const row = () => page.locator('[data-test=schedules] tbody tr[data-id]');
  try {
    await login(page, P.username, P.password);
    await setLanguage(page, 'ja');
    await page.click('a.nav-link[href="/reports"]');
    await page.waitForSelector('a.report-tab[data-report=schedules]');
    await page.click('a.report-tab[data-report=schedules]');
    await page.waitForURL(/\/reports\/schedules$/);
    await page.waitForSelector('[data-test=schedules] td.empty');
    check('section title in Japanese', (await page.textContent('[data-test=report-title]')) === '定期レポート');
    check('nothing scheduled yet', (await page.textContent('[data-test=schedules] td.empty')) === '定期レポートはありません。');

    await page.selectOption('#s-report', 'incoming_domains');
    await page.selectOption('#s-every', 'weekly');
    await page.fill('#s-at', '18:30');
    await page.fill('#s-zone', 'Mars/Olympus');
    await page.selectOption('#s-format', 'csv');
    await page.fill('#s-recipients', 'boss@example.com\naudit@example.jp\n');
    await page.click('[data-test=sched-save]');
    await page.waitForSelector('#status.status-error:not([hidden])');
    const err = await page.textContent('#status');
    check('a bad zone refused with the server message', err.includes('"time_zone" must be a zone of the tz database'), err);
    await page.fill('#s-zone', 'Asia/Tokyo');
    await page.click('[data-test=sched-save]');
    await page.waitForSelector('[data-test=schedules] tbody tr[data-id]');
    const cells = await row().evaluate((tr) => Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map((td) => [td.dataset.col, td.textContent])));
    check('the new schedule\'s row', cells.report === '送信元ドメイン' && cells.every === '毎週 (月曜日)' && cells.at === '18:30 Asia/Tokyo' &&
      cells.format === 'CSV' && cells.recipients === 'boss@example.com, audit@example.jp' && cells.last_run === '—', cells);
    check('next run is a Monday 18:30 in Tokyo', /18:30/.test(cells.next_run), cells.next_run);
    result.values.created = cells;
    await shot(page, 'schedules-ja');

    // edit: daily at 07:15 UTC, one recipient
    await row().locator('[data-test=sched-edit]').click();
    check('form filled from the row', await page.inputValue('#s-at') === '18:30' && await page.inputValue('#s-zone') === 'Asia/Tokyo');
    await page.selectOption('#s-every', 'daily');
    await page.fill('#s-at', '07:15');
    await page.fill('#s-zone', 'UTC');
    await page.fill('#s-recipients', 'boss@example.com');
    await page.click('[data-test=sched-save]');
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-test=schedules] tbody tr[data-id] td[data-col=at]');
      return c && c.textContent === '07:15 UTC';
    });
    check('edited in place, one row', await row().count() === 1);
    check('recipients changed', (await row().locator('td[data-col=recipients]').textContent()) === 'boss@example.com');

    // send now: the archive lists the copy, its download is the document
    await row().locator('[data-test=sched-run]').click();
    await page.waitForSelector('[data-test=archive] tbody tr[data-id]');
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-test=archive] tbody tr[data-id] td[data-col=mail]');
      return c && c.textContent === '送信済み';
    }, null, { timeout: TIMEOUT }).catch(async () => {
      await page.reload();
      await page.waitForFunction(() => {
        const c = document.querySelector('[data-test=archive] tbody tr[data-id] td[data-col=mail]');
        return c && c.textContent === '送信済み';
      });
    });
    const arch = await page.locator('[data-test=archive] tbody tr[data-id]').evaluate((tr) => Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map((td) => [td.dataset.col, td.textContent])));
    check('the archived copy', arch.report === '送信元ドメイン' && arch.mail === '送信済み', arch);
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('[data-test=archive-download]')]);
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(await dl.path(), 'utf8');
    check('the download is the archived CSV', text.startsWith('key,'), text.slice(0, 80));
    check('its file name', /^incoming_domains-prev_day-\d+\.csv$/.test(dl.suggestedFilename()), dl.suggestedFilename());
    result.values.download = text;
    result.values.download_name = dl.suggestedFilename();
    await shot(page, 'schedules-archive-ja');

    await setLanguage(page, 'en');
    await page.waitForSelector('[data-test=schedules] tbody tr[data-id]');
    check('section title in English', (await page.textContent('[data-test=report-title]')) === 'Scheduled reports');
    check('every in English', (await row().locator('td[data-col=every]').textContent()) === 'Day');
    await page.waitForSelector('[data-test=archive] tbody tr[data-id] td[data-col=mail]');
    check('mail state in English', (await page.textContent('[data-test=archive] tbody tr[data-id] td[data-col=mail]')) === 'Sent');
    await shot(page, 'schedules-en');

    // delete after confirming; the copy stays
    await row().locator('[data-test=sched-remove]').click();
    await page.waitForSelector('dialog.dialog[open]');
    await page.click('[data-test=dialog-confirm]');
    await page.waitForSelector('[data-test=schedules] td.empty');
    check('the copy stays', await page.locator('[data-test=archive] tbody tr[data-id]').count() === 1);
  } finally {
    await b.close();
  }
}

const SCENARIOS = {
  oidc,
  'login-page': loginPage, admin, enduser, 'enduser-ldap': enduserLdap, 'digest-links': digestLinks,
  attachments: attachmentsAndHiddenBodies, gateways, 'gateway-mapping': gatewayMapping, 'pvo-admin': pvoAdmin, 'pvo-operator': pvoOperator, 'pvo-rescan': pvoRescan, 'pvo-norescan': pvoNoRescan,
  totp, tracking, levels, saml, reports, schedules,
};

try {
  if (!BASE || !SCENARIOS[scenario]) throw new Error('usage: LAZARET_URL=... node web_e2e.mjs ' + Object.keys(SCENARIOS).join('|'));
  await SCENARIOS[scenario]();
  check('no JavaScript dialog opened', result.dialogs.length === 0, result.dialogs);
  check('no errors in the page', result.console_errors.length === 0, result.console_errors);
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
}
if (!result.ok && lastPage) {
  await shot(lastPage, 'failure-' + scenario).catch(() => {});
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.ok ? 0 : 1);
