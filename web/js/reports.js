// The administrators' Reports pages (GET /api/v1/reports/{report}): an overview
// with the totals, a time series and the top sender domains, and a page per
// report with its table and a bar chart. Every page has a period picker (with a
// custom range), a gateway picker and a link to the same report as CSV. Charts
// are inline SVG drawn here; keys and numbers go in as text.

import { api, query } from './api.js';
import { h, clear } from './dom.js';
import { t, formatNumber, formatDate, isoToLocalInput, localInputToIso, language } from './i18n.js';
import { navigate } from './session.js';

export const REPORTS = ['overview', 'incoming_domains', 'incoming_ips', 'sender_groups',
  'outgoing_destinations', 'outgoing_senders', 'internal_users', 'content_filters',
  'virus_types', 'outbreak', 'tls', 'rate_limits', 'system_capacity'];
const PERIODS = ['hour', 'day', 'week', '30d', '90d', 'prev_day', 'prev_month', 'year', 'custom'];
// Reports that count sessions or refusals (count), not messages (incoming, ...).
const COUNTED = ['sender_groups', 'tls', 'rate_limits'];
const MESSAGE_COLUMNS = ['incoming', 'clean', 'spam', 'suspect', 'virus', 'content_filter'];
const TOTALS = ['incoming', 'clean', 'spam', 'suspect', 'virus', 'content_filter', 'rejected_connections'];
const SERIES = ['incoming', 'clean', 'spam', 'virus'];
const SERIES_COLORS = { incoming: '#1f5f8b', clean: '#1a7f37', spam: '#b42318', virus: '#8250df' };
// system_capacity: its columns (GET /api/v1/reports/system_capacity), the tiles of
// its totals, and the lines of its chart.
const CAPACITY_COLUMNS = ['samples', 'messages_in', 'messages_out', 'connections', 'connections_avg',
  'connections_peak', 'load_avg', 'load_max', 'memory_max', 'backlog_max'];
const CAPACITY_TOTALS = ['messages_in', 'messages_out', 'connections', 'connections_peak',
  'load_avg', 'load_max', 'memory_max', 'backlog_max'];
const CAPACITY_SERIES = ['messages_in', 'messages_out'];
const CAPACITY_COLORS = { messages_in: '#1f5f8b', messages_out: '#1a7f37' };

const SVG_NS = 'http://www.w3.org/2000/svg';

// An SVG element; children as in h(): strings become text nodes.
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const num = (n) => formatNumber(n || 0);

// A bucket's start as the reader knows it: hours in the user's zone, days and
// months (UTC buckets) by their date.
function bucketLabel(iso, gran) {
  if (gran === 'hour') return formatDate(iso);
  const d = new Date(iso);
  const opts = gran === 'month'
    ? { year: 'numeric', month: language() === 'ja' ? '2-digit' : 'short', timeZone: 'UTC' }
    : { year: 'numeric', month: language() === 'ja' ? '2-digit' : 'short', day: '2-digit', timeZone: 'UTC' };
  return new Intl.DateTimeFormat(language() === 'ja' ? 'ja-JP' : 'en-GB', opts).format(d);
}

// A line per counter over the buckets, with its axis, legend and <title>.
function seriesChart(doc, keys = SERIES, colors = SERIES_COLORS) {
  const W = 1100, H = 300, L = 56, R = 16, T = 16, B = 56;
  const series = doc.series || [];
  const max = Math.max(1, ...series.map((b) => Math.max(...keys.map((k) => b[k] || 0))));
  const top = niceMax(max);
  const n = series.length;
  const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const title = t('rep.series_title', { from: bucketLabel(doc.since, doc.granularity), n: num(n) });
  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => [
    s('line', { x1: L, x2: W - R, y1: y(top * f), y2: y(top * f), class: 'chart-grid' }),
    s('text', { x: L - 6, y: y(top * f) + 4, 'text-anchor': 'end', class: 'chart-axis' }, num(top * f)),
  ]);
  const ticks = n ? [...new Set([0, Math.floor((n - 1) / 2), n - 1])].map((i) =>
    s('text', { x: x(i), y: H - B + 20, 'text-anchor': i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle', class: 'chart-axis' },
      bucketLabel(series[i].at, doc.granularity))) : [];
  const lines = keys.slice().reverse().map((k) => s('g', { 'data-series': k },
    s('polyline', {
      points: series.map((b, i) => x(i).toFixed(1) + ',' + y(b[k] || 0).toFixed(1)).join(' '),
      fill: 'none', stroke: colors[k], 'stroke-width': 2,
      'stroke-dasharray': k === 'incoming' ? '6 4' : null,
    }),
    series.map((b, i) => (b[k] ? s('circle', { cx: x(i), cy: y(b[k]), r: 3, fill: colors[k] },
      s('title', t('rep.point', { at: bucketLabel(b.at, doc.granularity), what: t('rep.c.' + k), n: num(b[k]) }))) : null))));
  const legend = keys.map((k, i) => s('g', { transform: `translate(${L + i * 150},${H - 10})` },
    s('line', { x1: 0, x2: 22, y1: -4, y2: -4, stroke: colors[k], 'stroke-width': 3, 'stroke-dasharray': k === 'incoming' ? '6 4' : null }),
    s('text', { x: 28, class: 'chart-legend' }, t('rep.c.' + k))));
  return s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title, 'data-test': 'series-chart' },
    s('title', title), grid, ticks, lines, legend);
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 5, 10]) if (m * p >= v && (m * p) % 4 === 0) return m * p;
  return Math.ceil(v / 4) * 4;
}

// Horizontal bars of one counter per key, the key and the number as text.
function barChart(rows, counter, caption) {
  const W = 1100, rowH = 26, L = 300, R = 80;
  const H = Math.max(1, rows.length) * rowH + 8;
  const max = Math.max(1, ...rows.map((r) => r[counter] || 0));
  const title = caption + ' — ' + t('rep.c.' + counter);
  const bars = rows.map((r, i) => {
    const v = r[counter] || 0;
    const w = ((W - L - R) * v) / max;
    const key = r.key === '' ? t('rep.empty_key') : r.key;
    const label = key.length > 36 ? key.slice(0, 35) + '…' : key;
    return s('g', { transform: `translate(0,${i * rowH + 4})`, 'data-key': r.key },
      s('title', t('rep.bar', { key, what: t('rep.c.' + counter), n: num(v) })),
      s('text', { x: L - 8, y: 17, 'text-anchor': 'end', class: 'chart-label' }, label),
      s('rect', { x: L, y: 4, width: Math.max(v ? 2 : 0, w).toFixed(1), height: rowH - 8, class: 'chart-bar' }),
      s('text', { x: L + w + 6, y: 17, class: 'chart-value' }, num(v)));
  });
  return s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title, 'data-test': 'bar-chart' },
    s('title', title), rows.length ? bars : s('text', { x: W / 2, y: 18, 'text-anchor': 'middle', class: 'chart-axis' }, t('rep.no_rows')));
}

function rowsTable(report, rows) {
  const cols = COUNTED.includes(report) ? ['count'] : MESSAGE_COLUMNS;
  return h('div.table-wrap', h('table.plain-table', { 'data-test': 'report-rows', 'aria-label': t('rep.name.' + report) },
    h('thead', h('tr', h('th', { scope: 'col' }, t('rep.key.' + report)),
      cols.map((c) => h('th.num', { scope: 'col' }, t('rep.c.' + c))))),
    h('tbody', rows.length
      ? rows.map((r) => h('tr', { 'data-key': r.key },
        h('th.report-key', { scope: 'row' }, r.key === '' ? t('rep.empty_key') : r.key),
        cols.map((c) => h('td.num', { 'data-col': c }, num(r[c])))))
      : h('tr', h('td.empty', { colspan: cols.length + 1 }, t('rep.no_rows'))))));
}

function seriesTable(doc) {
  return h('div.table-wrap', h('table.plain-table', { 'data-test': 'series-rows', 'aria-label': t('rep.series') },
    h('thead', h('tr', h('th', { scope: 'col' }, t('rep.bucket')),
      SERIES.map((k) => h('th.num', { scope: 'col' }, t('rep.c.' + k))))),
    h('tbody', (doc.series || []).map((b) => h('tr', { 'data-at': b.at },
      h('th', { scope: 'row' }, bucketLabel(b.at, doc.granularity)),
      SERIES.map((k) => h('td.num', { 'data-col': k }, num(b[k]))))))));
}

// A system_capacity value: counts as numbers, loads and averages with two
// decimals, memory in bytes as a size; null (no sample) as a dash.
function capValue(k, v) {
  if (v === null || v === undefined) return '—';
  if (k === 'load_avg' || k === 'load_max' || k === 'connections_avg') {
    return new Intl.NumberFormat(language() === 'ja' ? 'ja-JP' : 'en-GB',
      { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(v);
  }
  if (k === 'memory_max') return formatNumber(Math.round(v / 1048576)) + ' MiB';
  return num(v);
}

function capacityTable(doc) {
  return h('div.table-wrap', h('table.plain-table', { 'data-test': 'series-rows', 'aria-label': t('rep.series') },
    h('thead', h('tr', h('th', { scope: 'col' }, t('rep.bucket')),
      CAPACITY_COLUMNS.map((k) => h('th.num', { scope: 'col' }, t('rep.c.' + k))))),
    h('tbody', (doc.series || []).map((b) => h('tr', { 'data-at': b.at },
      h('th', { scope: 'row' }, bucketLabel(b.at, doc.granularity)),
      CAPACITY_COLUMNS.map((k) => h('td.num', { 'data-col': k }, capValue(k, b[k]))))))));
}

// The query of the page's pickers, as in the address bar.
function readState() {
  const q = new URLSearchParams(location.search);
  const period = PERIODS.includes(q.get('period')) ? q.get('period') : 'day';
  return { period, since: q.get('since') || '', until: q.get('until') || '', gateway: q.get('gateway') || '' };
}

function apiQuery(st, extra) {
  const p = { period: st.period, gateway: st.gateway, ...extra };
  if (st.period === 'custom') { p.since = st.since; p.until = st.until; }
  return query(p);
}

export function renderReports(main, report) {
  const st = readState();
  const content = h('div.report-content', { 'aria-live': 'polite', 'aria-busy': 'true' });
  const csv = h('a.btn.btn-small', { 'data-test': 'csv' }, t('rep.csv'));
  const pdf = h('a.btn.btn-small', { 'data-test': 'pdf' }, t('rep.pdf'));

  const period = h('select.input', { id: 'rep-period', 'data-test': 'period' },
    PERIODS.map((p) => h('option', { value: p, selected: p === st.period }, t('rep.period.' + p))));
  const since = h('input.input', { id: 'rep-since', type: 'datetime-local', value: isoToLocalInput(st.since), 'data-test': 'since' });
  const until = h('input.input', { id: 'rep-until', type: 'datetime-local', value: isoToLocalInput(st.until), 'data-test': 'until' });
  const gateway = h('select.input', { id: 'rep-gateway', 'data-test': 'gateway' },
    h('option', { value: '' }, t('rep.all_gateways')),
    st.gateway ? h('option', { value: st.gateway, selected: true }, st.gateway) : null);
  const customFields = h('div.report-custom', { hidden: st.period !== 'custom' },
    h('label.field.field-compact', { for: 'rep-since' }, h('span.field-label', t('rep.since')), since),
    h('label.field.field-compact', { for: 'rep-until' }, h('span.field-label', t('rep.until')), until),
    h('button.btn', { type: 'submit', 'data-test': 'apply' }, t('rep.apply')));

  const form = h('form.report-pickers', {
    on: {
      submit: (ev) => { ev.preventDefault(); apply(); },
    },
  },
  h('label.field.field-compact', { for: 'rep-period' }, h('span.field-label', t('rep.period')), period),
  customFields,
  h('label.field.field-compact', { for: 'rep-gateway' }, h('span.field-label', t('rep.gateway')), gateway),
  h('div.report-csv', csv, ' ', pdf));

  period.addEventListener('change', () => {
    customFields.hidden = period.value !== 'custom';
    if (period.value !== 'custom') apply();
    else since.focus();
  });
  gateway.addEventListener('change', () => apply());

  const tabs = h('nav.report-tabs', { 'aria-label': t('rep.list') },
    REPORTS.map((r) => {
      const path = r === 'overview' ? '/reports' : '/reports/' + r;
      return h('a.report-tab', {
        href: path,
        'aria-current': r === report ? 'page' : null,
        'data-report': r,
        on: { click: (ev) => { if (!ev.ctrlKey && !ev.metaKey && ev.button === 0) { ev.preventDefault(); navigate(path + location.search); } } },
      }, t('rep.name.' + r));
    }),
    h('a.report-tab', { href: '/reports/schedules', 'data-report': 'schedules' }, t('sched.title')));

  main.append(h('h1.page-title', t('rep.title')), tabs,
    h('h2.section-title', { 'data-test': 'report-title' }, t('rep.name.' + report)),
    h('p.note', t('rep.intro.' + report)), form, content);

  api('GET', '/api/v1/gateways').then((doc) => {
    const names = ((doc && doc.gateways) || []).filter((g) => g.state !== 'pending').map((g) => g.name).sort();
    clear(gateway).append(h('option', { value: '' }, t('rep.all_gateways')),
      ...names.map((n) => h('option', { value: n, selected: n === st.gateway }, n)));
    if (st.gateway && !names.includes(st.gateway)) gateway.append(h('option', { value: st.gateway, selected: true }, st.gateway));
  }).catch(() => { /* the picker keeps "all" */ });

  let seq = 0;
  function apply() {
    st.period = period.value;
    st.gateway = gateway.value;
    if (st.period === 'custom') {
      st.since = localInputToIso(since.value);
      st.until = localInputToIso(until.value);
      if (!st.since || !st.until) {
        clear(content).append(h('p.empty.error', { 'data-test': 'report-error' }, t('rep.need_range')));
        return;
      }
    } else {
      st.since = '';
      st.until = '';
    }
    const q = { period: st.period, gateway: st.gateway };
    if (st.period === 'custom') { q.since = st.since; q.until = st.until; }
    history.replaceState(null, '', location.pathname + query(q));
    load();
  }

  async function load() {
    const mine = ++seq;
    content.setAttribute('aria-busy', 'true');
    const extra = report === 'overview' || report === 'system_capacity' ? {} : { limit: 20 };
    csv.href = '/api/v1/reports/' + report + apiQuery(st, { ...extra, format: 'csv' });
    csv.setAttribute('download', report + '-' + st.period + (st.gateway ? '-' + st.gateway : '') + '.csv');
    // the server names the PDF (Content-Disposition)
    pdf.href = '/api/v1/reports/' + report + apiQuery(st, { ...extra, format: 'pdf' });
    try {
      const doc = await api('GET', '/api/v1/reports/' + report + apiQuery(st, extra));
      const top = report === 'overview'
        ? await api('GET', '/api/v1/reports/incoming_domains' + apiQuery(st, { limit: 10 })) : null;
      if (mine !== seq) return;
      clear(content);
      const range = h('p.muted', { 'data-test': 'report-range' }, t('rep.range', {
        since: formatDate(doc.since), until: formatDate(doc.until),
        gateway: doc.gateway === null ? t('rep.all_gateways') : doc.gateway,
      }));
      if (report === 'system_capacity') {
        content.append(range,
          h('ul.report-tiles', { 'data-test': 'totals' }, CAPACITY_TOTALS.map((k) => h('li.report-tile', { 'data-total': k },
            h('span.report-tile-label', t('rep.c.' + k)),
            h('span.report-tile-value', capValue(k, doc.totals[k]))))),
          h('h3.section-title', t('rep.series')),
          h('figure.chart-wrap', seriesChart(doc, CAPACITY_SERIES, CAPACITY_COLORS)),
          capacityTable(doc));
      } else if (report === 'overview') {
        content.append(range,
          h('ul.report-tiles', { 'data-test': 'totals' }, TOTALS.map((k) => h('li.report-tile', { 'data-total': k },
            h('span.report-tile-label', t('rep.c.' + k)),
            h('span.report-tile-value', num(doc.totals[k]))))),
          h('h3.section-title', t('rep.series')),
          h('figure.chart-wrap', seriesChart(doc)),
          seriesTable(doc),
          h('h3.section-title', t('rep.top_domains')),
          h('figure.chart-wrap', barChart(top.rows, 'incoming', t('rep.top_domains'))),
          rowsTable('incoming_domains', top.rows));
      } else {
        const counter = COUNTED.includes(report) ? 'count' : 'incoming';
        content.append(range,
          h('figure.chart-wrap', barChart(doc.rows, counter, t('rep.name.' + report))),
          rowsTable(report, doc.rows));
      }
    } catch (e) {
      if (mine !== seq) return;
      clear(content).append(h('p.empty.error', { 'data-test': 'report-error' }, t('rep.error', { message: e.message })));
    } finally {
      if (mine === seq) content.setAttribute('aria-busy', 'false');
    }
  }
  load();
}
