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

async function rowSubjects(page) {
  await page.waitForSelector('[data-test=messages] tbody tr.msg-row, [data-test=messages] tbody td.empty');
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

const SCENARIOS = { 'login-page': loginPage, admin, enduser, 'enduser-ldap': enduserLdap, 'digest-links': digestLinks, attachments: attachmentsAndHiddenBodies, gateways };

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
