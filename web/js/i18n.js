// Every string the application shows, in English and Japanese, and the user's
// date and time format. The language is the user's setting, else the one chosen
// with the switch in this browser, else the browser's own preference.

const STRINGS = {
  en: {
    product: 'Lazaret',
    tagline: 'Spam quarantine',
    'nav.messages': 'Messages',
    'nav.users': 'Users',
    'nav.audit': 'Audit log',
    'nav.settings': 'Settings',
    'nav.skip': 'Skip to content',
    'lang.label': 'Language',
    'user.signout': 'Sign out',
    'role.admin': 'Administrator',
    'role.operator': 'Operator',
    'role.enduser': 'User',
    'login.title': 'Sign in',
    'login.intro': 'Sign in to review quarantined mail.',
    'login.username': 'Username',
    'login.password': 'Password',
    'login.submit': 'Sign in',
    'login.failed': 'The username or password is not correct.',
    'login.unavailable': 'Sign-in is not available on this server.',
    'login.busy': 'Signing in…',
    'overview.title': 'Quarantines',
    'overview.messages': 'Messages',
    'overview.size': 'Size',
    'overview.oldest': 'Oldest',
    'overview.none': 'No quarantines yet.',
    'search.placeholder': 'Search subjects (press / to focus)',
    'search.submit': 'Search',
    'search.clear': 'Clear',
    'search.more': 'Filters',
    'filter.quarantine': 'Quarantine',
    'filter.recipient': 'Recipient',
    'filter.sender': 'Sender',
    'filter.subject': 'Subject',
    'filter.since': 'Received after',
    'filter.until': 'Received before',
    'filter.verdict': 'Verdict',
    'filter.gateway': 'Gateway',
    'filter.state': 'State',
    'filter.any': 'Any',
    'verdict.spam': 'Spam',
    'verdict.suspect': 'Suspect',
    'verdict.virus': 'Virus',
    'state.quarantined': 'Quarantined',
    'state.releasing': 'Releasing',
    'state.released': 'Released',
    'state.deleted': 'Deleted',
    'state.expired': 'Expired',
    'state.failed': 'Failed',
    'col.select': 'Select',
    'col.from': 'From',
    'col.subject': 'Subject',
    'col.recipients': 'Recipients',
    'col.score': 'Score',
    'col.received': 'Received',
    'col.expires': 'Expires',
    'list.empty': 'No messages match.',
    'list.loading': 'Loading…',
    'list.newer': '← Newer',
    'list.older': 'Older →',
    'list.selected': '{n} selected',
    'list.select_all': 'Select all on this page',
    'list.no_subject': '(no subject)',
    'list.count': '{n} shown',
    'action.release': 'Release',
    'action.delete': 'Delete',
    'action.release_selected': 'Release selected',
    'action.delete_selected': 'Delete selected',
    'action.release_matching': 'Release all matching…',
    'action.delete_matching': 'Delete all matching…',
    'action.cancel': 'Cancel',
    'action.save': 'Save',
    'action.back': '← Back to messages',
    'action.download': 'Download original (.eml)',
    'confirm.release_title': 'Release messages',
    'confirm.delete_title': 'Delete messages',
    'confirm.release_selected': 'Release {n} selected message(s) to their recipients?',
    'confirm.delete_selected': 'Delete {n} selected message(s)? This cannot be undone.',
    'confirm.release_matching': 'Release every message that matches this filter?',
    'confirm.delete_matching': 'Delete every message that matches this filter? This cannot be undone.',
    'confirm.release_one': 'Release this message to its recipients?',
    'confirm.delete_one': 'Delete this message? This cannot be undone.',
    'confirm.safelist_sender': 'Also add {sender} to my safelist',
    'confirm.filter': 'Filter',
    'confirm.need_filter': 'Set at least one filter first.',
    'done.released': 'Released {n} message(s).',
    'done.deleted': 'Deleted {n} message(s).',
    'done.released_one': 'Released. Delivery is under way.',
    'done.deleted_one': 'Deleted.',
    'done.safelisted': '{sender} was added to your safelist.',
    'done.saved': 'Saved.',
    'error.generic': 'Something went wrong: {message}',
    'error.network': 'The server cannot be reached.',
    'error.forbidden': 'You are not allowed to do this.',
    'error.not_found': 'This message does not exist or is not yours to see.',
    'detail.title': 'Message',
    'detail.from': 'From',
    'detail.sender': 'Envelope sender',
    'detail.recipients': 'Recipients',
    'detail.received': 'Received',
    'detail.expires': 'Expires',
    'detail.size': 'Size',
    'detail.verdict': 'Verdict',
    'detail.score': 'Score',
    'detail.gateway': 'Gateway',
    'detail.quarantine': 'Quarantine',
    'detail.id': 'Message ID',
    'detail.tab_text': 'Text',
    'detail.tab_headers': 'Headers',
    'detail.tab_attachments': 'Attachments ({n})',
    'detail.no_text': 'This message has no text part.',
    'detail.from_html': 'Shown as plain text converted from HTML. Nothing in it is loaded or run.',
    'detail.truncated': 'The text is longer than shown here.',
    'detail.no_attachments': 'No attachments.',
    'detail.reply': 'Server reply',
    'detail.never': 'Never',
    'att.name': 'File name',
    'att.type': 'Type',
    'att.size': 'Size',
    'att.unnamed': '(no name)',
    'att.download': 'Download',
    'att.download_named': 'Download {name}',
    'detail.body_hidden': 'The content of this message is hidden until it is released. Once released, read it in your mailbox.',
    'users.title': 'Users',
    'users.username': 'Username',
    'users.role': 'Role',
    'users.addresses': 'Addresses',
    'users.source': 'Source',
    'users.last_login': 'Last sign-in',
    'users.add': 'Add user',
    'users.password': 'Password',
    'users.addresses_hint': 'One address per line',
    'users.create': 'Create user',
    'users.created': 'User {name} was created.',
    'users.delete_title': 'Delete user',
    'users.delete_confirm': 'Delete the user {name}? Their sessions end at once.',
    'users.deleted': 'User {name} was deleted.',
    'users.empty': 'No users.',
    'nav.gateways': 'Gateways',
    'gateways.title': 'Gateways',
    'gateways.intro': 'The gateways this manager trusts. A registered gateway sends from its address and uses its own token; a pending one said hello without a token and has no rights until it is registered.',
    'gateways.name': 'Name',
    'gateways.address': 'Address',
    'gateways.group': 'Group',
    'gateways.cluster': 'Cluster',
    'gateways.state': 'State',
    'gateways.state.registered': 'Registered',
    'gateways.state.pending': 'Pending',
    'gateways.last_seen': 'Last seen',
    'gateways.never': 'Never',
    'gateways.version': 'Version',
    'gateways.release_port': 'Release port',
    'gateways.empty': 'No gateways yet.',
    'gateways.add': 'Register a gateway',
    'gateways.add_intro': 'The address is the IP address the gateway sends from. The token is shown once, right after registering.',
    'gateways.create': 'Register',
    'gateways.register': 'Register…',
    'gateways.added': 'Gateway {name} was registered.',
    'gateways.token': 'Token',
    'gateways.token_title': 'Token of {name}',
    'gateways.token_once': 'Copy this token now. It is shown only this once: the manager keeps only a hash of it.',
    'gateways.token_where': 'Put it in the gateway’s lazaret-gw.conf as [manager] api_token and reload the gateway.',
    'gateways.token_done': 'I have copied it',
    'gateways.remove': 'Remove',
    'gateways.remove_title': 'Remove gateway',
    'gateways.remove_confirm': 'Remove the gateway {name}? Its token stops working at once.',
    'gateways.remove_pending_confirm': 'Remove the pending gateway {name} from the list?',
    'gateways.removed': 'Gateway {name} was removed.',
    'audit.title': 'Audit log',
    'audit.at': 'Time',
    'audit.actor': 'Who',
    'audit.action': 'Action',
    'audit.target': 'Target',
    'audit.peer': 'Address',
    'audit.detail': 'Details',
    'audit.empty': 'No entries.',
    'settings.title': 'Settings',
    'settings.prefs': 'Display',
    'settings.language': 'Language',
    'settings.time_zone': 'Time zone',
    'settings.browser_tz': 'Browser default ({tz})',
    'settings.slbl': 'Safelist and blocklist',
    'settings.slbl_intro': 'Mail from senders on your safelist is delivered without quarantine; mail from senders on your blocklist is always quarantined. One entry per line: an address (taro@example.jp), a domain (example.jp) or a domain with its subdomains (.example.jp).',
    'settings.safelist': 'Safelist',
    'settings.blocklist': 'Blocklist',
    'settings.slbl_unavailable': 'Safelists are not available on this server.',
    'keys.hint': 'Keys: j/k move · x select · Enter open · r release · d delete · / search',
    'page.not_found': 'Page not found.',
    'page.forbidden': 'This page is for administrators.',
  },
  ja: {
    product: 'Lazaret',
    tagline: '迷惑メール隔離',
    'nav.messages': 'メッセージ',
    'nav.users': 'ユーザー',
    'nav.audit': '監査ログ',
    'nav.settings': '設定',
    'nav.skip': '本文へ移動',
    'lang.label': '言語',
    'user.signout': 'サインアウト',
    'role.admin': '管理者',
    'role.operator': 'オペレーター',
    'role.enduser': 'ユーザー',
    'login.title': 'サインイン',
    'login.intro': '隔離されたメールを確認するにはサインインしてください。',
    'login.username': 'ユーザー名',
    'login.password': 'パスワード',
    'login.submit': 'サインイン',
    'login.failed': 'ユーザー名またはパスワードが正しくありません。',
    'login.unavailable': 'このサーバーではサインインを利用できません。',
    'login.busy': 'サインインしています…',
    'overview.title': '隔離領域',
    'overview.messages': '件数',
    'overview.size': 'サイズ',
    'overview.oldest': '最も古いもの',
    'overview.none': '隔離領域はまだありません。',
    'search.placeholder': '件名を検索（/ キーで移動）',
    'search.submit': '検索',
    'search.clear': 'クリア',
    'search.more': '絞り込み',
    'filter.quarantine': '隔離領域',
    'filter.recipient': '宛先',
    'filter.sender': '差出人',
    'filter.subject': '件名',
    'filter.since': '受信日時（以降）',
    'filter.until': '受信日時（以前）',
    'filter.verdict': '判定',
    'filter.gateway': 'ゲートウェイ',
    'filter.state': '状態',
    'filter.any': 'すべて',
    'verdict.spam': 'スパム',
    'verdict.suspect': 'スパムの疑い',
    'verdict.virus': 'ウイルス',
    'state.quarantined': '隔離中',
    'state.releasing': '配信中',
    'state.released': '配信済み',
    'state.deleted': '削除済み',
    'state.expired': '期限切れ',
    'state.failed': '配信失敗',
    'col.select': '選択',
    'col.from': '差出人',
    'col.subject': '件名',
    'col.recipients': '宛先',
    'col.score': 'スコア',
    'col.received': '受信日時',
    'col.expires': '削除予定',
    'list.empty': '該当するメッセージはありません。',
    'list.loading': '読み込み中…',
    'list.newer': '← 新しい',
    'list.older': '古い →',
    'list.selected': '{n} 件を選択中',
    'list.select_all': 'このページをすべて選択',
    'list.no_subject': '（件名なし）',
    'list.count': '{n} 件を表示',
    'action.release': '配信',
    'action.delete': '削除',
    'action.release_selected': '選択したものを配信',
    'action.delete_selected': '選択したものを削除',
    'action.release_matching': '条件に一致するものをすべて配信…',
    'action.delete_matching': '条件に一致するものをすべて削除…',
    'action.cancel': 'キャンセル',
    'action.save': '保存',
    'action.back': '← メッセージ一覧へ',
    'action.download': '元のメールをダウンロード（.eml）',
    'confirm.release_title': 'メッセージの配信',
    'confirm.delete_title': 'メッセージの削除',
    'confirm.release_selected': '選択した {n} 件を宛先へ配信しますか？',
    'confirm.delete_selected': '選択した {n} 件を削除しますか？元に戻せません。',
    'confirm.release_matching': 'この条件に一致するメッセージをすべて配信しますか？',
    'confirm.delete_matching': 'この条件に一致するメッセージをすべて削除しますか？元に戻せません。',
    'confirm.release_one': 'このメッセージを宛先へ配信しますか？',
    'confirm.delete_one': 'このメッセージを削除しますか？元に戻せません。',
    'confirm.safelist_sender': '{sender} をセーフリストにも追加する',
    'confirm.filter': '条件',
    'confirm.need_filter': '先に絞り込み条件を 1 つ以上指定してください。',
    'done.released': '{n} 件を配信しました。',
    'done.deleted': '{n} 件を削除しました。',
    'done.released_one': '配信を開始しました。',
    'done.deleted_one': '削除しました。',
    'done.safelisted': '{sender} をセーフリストに追加しました。',
    'done.saved': '保存しました。',
    'error.generic': 'エラーが発生しました: {message}',
    'error.network': 'サーバーに接続できません。',
    'error.forbidden': 'この操作は許可されていません。',
    'error.not_found': 'このメッセージは存在しないか、閲覧できません。',
    'detail.title': 'メッセージ',
    'detail.from': '差出人',
    'detail.sender': 'エンベロープ差出人',
    'detail.recipients': '宛先',
    'detail.received': '受信日時',
    'detail.expires': '削除予定',
    'detail.size': 'サイズ',
    'detail.verdict': '判定',
    'detail.score': 'スコア',
    'detail.gateway': 'ゲートウェイ',
    'detail.quarantine': '隔離領域',
    'detail.id': 'メッセージ ID',
    'detail.tab_text': '本文',
    'detail.tab_headers': 'ヘッダー',
    'detail.tab_attachments': '添付ファイル（{n}）',
    'detail.no_text': 'このメッセージにはテキストの本文がありません。',
    'detail.from_html': 'HTML をテキストに変換して表示しています。画像やスクリプトは読み込まれません。',
    'detail.truncated': '本文の一部のみを表示しています。',
    'detail.no_attachments': '添付ファイルはありません。',
    'detail.reply': 'サーバーの応答',
    'detail.never': 'なし',
    'att.name': 'ファイル名',
    'att.type': '種類',
    'att.size': 'サイズ',
    'att.unnamed': '（名前なし）',
    'att.download': 'ダウンロード',
    'att.download_named': '{name} をダウンロード',
    'detail.body_hidden': 'このメッセージの本文は、配信されるまで表示されません。配信後にメールボックスでお読みください。',
    'users.title': 'ユーザー',
    'users.username': 'ユーザー名',
    'users.role': '役割',
    'users.addresses': 'メールアドレス',
    'users.source': '認証元',
    'users.last_login': '最終サインイン',
    'users.add': 'ユーザーを追加',
    'users.password': 'パスワード',
    'users.addresses_hint': '1 行に 1 アドレス',
    'users.create': '作成',
    'users.created': 'ユーザー {name} を作成しました。',
    'users.delete_title': 'ユーザーの削除',
    'users.delete_confirm': 'ユーザー {name} を削除しますか？セッションはすぐに終了します。',
    'users.deleted': 'ユーザー {name} を削除しました。',
    'users.empty': 'ユーザーはいません。',
    'nav.gateways': 'ゲートウェイ',
    'gateways.title': 'ゲートウェイ',
    'gateways.intro': 'このマネージャーが信頼するゲートウェイです。登録済みのゲートウェイは登録したアドレスから送信し、専用のトークンを使います。保留中のゲートウェイはトークンなしで接続してきたもので、登録するまで何の権限もありません。',
    'gateways.name': '名前',
    'gateways.address': 'アドレス',
    'gateways.group': 'グループ',
    'gateways.cluster': 'クラスター',
    'gateways.state': '状態',
    'gateways.state.registered': '登録済み',
    'gateways.state.pending': '保留中',
    'gateways.last_seen': '最終接続',
    'gateways.never': 'なし',
    'gateways.version': 'バージョン',
    'gateways.release_port': '配信ポート',
    'gateways.empty': 'ゲートウェイはまだありません。',
    'gateways.add': 'ゲートウェイを登録',
    'gateways.add_intro': 'アドレスにはゲートウェイが送信に使う IP アドレスを入力します。トークンは登録の直後に一度だけ表示されます。',
    'gateways.create': '登録',
    'gateways.register': '登録…',
    'gateways.added': 'ゲートウェイ {name} を登録しました。',
    'gateways.token': 'トークン',
    'gateways.token_title': '{name} のトークン',
    'gateways.token_once': 'このトークンを今すぐコピーしてください。表示されるのはこの一度だけです（マネージャーにはハッシュしか残りません）。',
    'gateways.token_where': 'ゲートウェイの lazaret-gw.conf の [manager] api_token に設定し、ゲートウェイを再読み込みしてください。',
    'gateways.token_done': 'コピーしました',
    'gateways.remove': '削除',
    'gateways.remove_title': 'ゲートウェイの削除',
    'gateways.remove_confirm': 'ゲートウェイ {name} を削除しますか？トークンはすぐに使えなくなります。',
    'gateways.remove_pending_confirm': '保留中のゲートウェイ {name} を一覧から削除しますか？',
    'gateways.removed': 'ゲートウェイ {name} を削除しました。',
    'audit.title': '監査ログ',
    'audit.at': '日時',
    'audit.actor': '実行者',
    'audit.action': '操作',
    'audit.target': '対象',
    'audit.peer': '接続元',
    'audit.detail': '詳細',
    'audit.empty': '記録はありません。',
    'settings.title': '設定',
    'settings.prefs': '表示',
    'settings.language': '言語',
    'settings.time_zone': 'タイムゾーン',
    'settings.browser_tz': 'ブラウザーの設定（{tz}）',
    'settings.slbl': 'セーフリストとブロックリスト',
    'settings.slbl_intro': 'セーフリストの差出人からのメールは隔離されずに届きます。ブロックリストの差出人からのメールは必ず隔離されます。1 行に 1 件: アドレス（taro@example.jp）、ドメイン（example.jp）、サブドメインを含むドメイン（.example.jp）。',
    'settings.safelist': 'セーフリスト',
    'settings.blocklist': 'ブロックリスト',
    'settings.slbl_unavailable': 'このサーバーではセーフリストを利用できません。',
    'keys.hint': 'キー操作: j/k 移動 · x 選択 · Enter 開く · r 配信 · d 削除 · / 検索',
    'page.not_found': 'ページが見つかりません。',
    'page.forbidden': 'このページは管理者専用です。',
  },
};

export const LANGUAGES = [['ja', '日本語'], ['en', 'English']];

let lang = 'en';
let timeZone;

export function browserLanguage() {
  const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const p of prefs) {
    const base = String(p).toLowerCase().split('-')[0];
    if (base in STRINGS) return base;
  }
  return 'en';
}

// The user's setting wins, then this browser's choice, then the browser's languages.
export function chooseLanguage(userLanguage) {
  const stored = localStorage.getItem('lazaret.lang');
  const pick = [userLanguage, stored, browserLanguage()].find((l) => l && l in STRINGS);
  setLanguage(pick || 'en');
}

export function setLanguage(l) {
  lang = l in STRINGS ? l : 'en';
  document.documentElement.lang = lang;
}

export function rememberLanguage(l) {
  localStorage.setItem('lazaret.lang', l);
  setLanguage(l);
}

export function language() { return lang; }

export function setTimeZone(tz) {
  timeZone = undefined;
  if (!tz) return;
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    timeZone = tz;
  } catch { /* an unknown zone falls back to the browser's */ }
}

export function browserTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

// t('key', {n: 3}) -> the string in the current language with {n} replaced.
export function t(key, params) {
  let s = STRINGS[lang][key];
  if (s === undefined) s = STRINGS.en[key];
  if (s === undefined) s = key;
  if (params) {
    s = s.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  }
  return s;
}

function locale() { return lang === 'ja' ? 'ja-JP' : 'en-GB'; }

// "2026/11/27 19:30" (ja) or "27 Nov 2026, 19:30" (en), in the user's time zone.
export function formatDate(iso, { seconds = false } = {}) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const opts = {
    year: 'numeric', month: lang === 'ja' ? '2-digit' : 'short', day: '2-digit',
    hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone,
  };
  if (seconds) opts.second = '2-digit';
  return new Intl.DateTimeFormat(locale(), opts).format(d);
}

export function formatNumber(n, digits) {
  if (n === null || n === undefined) return '';
  return new Intl.NumberFormat(locale(), digits === undefined ? {} : {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(n);
}

// For <input type="datetime-local">: ISO (UTC) <-> local wall-clock text in the
// browser's zone (the input has no notion of another zone).
export function isoToLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function localInputToIso(v) {
  if (!v) return '';
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return '';
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
