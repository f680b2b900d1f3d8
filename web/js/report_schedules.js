// The administrators' scheduled reports (GET/POST /api/v1/report-schedules, PUT
// and DELETE /api/v1/report-schedules/{id}, POST .../run) and the archive of the
// copies made (GET /api/v1/report-archive, each downloadable as it was made),
// in the Reports section. A refused schedule shows the server's message.

import { api } from './api.js';
import { h, clear, modal, formatBytes } from './dom.js';
import { t, formatDate } from './i18n.js';
import { notify, notifyError } from './session.js';
import { REPORTS } from './reports.js';

const PERIODS = ['hour', 'day', 'week', '30d', '90d', 'prev_day', 'prev_month', 'year'];
const EVERY = ['daily', 'weekly', 'monthly'];
const FORMATS = ['pdf', 'csv'];

export function renderReportSchedules(main) {
  let editing = null; // the schedule being changed, or null for a new one

  const report = h('select.input', { id: 's-report', 'data-test': 'sched-report' },
    REPORTS.map((r) => h('option', { value: r }, t('rep.name.' + r))));
  const period = h('select.input', { id: 's-period', 'data-test': 'sched-period' },
    PERIODS.map((p) => h('option', { value: p, selected: p === 'prev_day' }, t('rep.period.' + p))));
  const every = h('select.input', { id: 's-every', 'data-test': 'sched-every' },
    EVERY.map((e) => h('option', { value: e }, t('sched.every.' + e))));
  const at = h('input.input', { id: 's-at', type: 'time', value: '06:00', required: true, 'data-test': 'sched-at' });
  const zone = h('input.input', { id: 's-zone', value: 'UTC', required: true, maxlength: 64, autocomplete: 'off', 'data-test': 'sched-zone' });
  const format = h('select.input', { id: 's-format', 'data-test': 'sched-format' },
    FORMATS.map((f) => h('option', { value: f }, f.toUpperCase())));
  const recipients = h('textarea.input.mono', { id: 's-recipients', rows: 3, required: true, spellcheck: 'false', 'data-test': 'sched-recipients' });
  const formTitle = h('h2.section-title', t('sched.new'));
  const cancelEdit = h('button.btn', { type: 'button', hidden: true, 'data-test': 'sched-cancel', on: { click: () => reset() } }, t('action.cancel'));

  const form = h('form.card-form', {
    'data-test': 'sched-form',
    on: {
      submit: async (ev) => {
        ev.preventDefault();
        const body = {
          report: report.value, period: period.value, every: every.value, format: format.value,
          at: at.value, time_zone: zone.value.trim(),
          recipients: recipients.value.split('\n').map((l) => l.trim()).filter((l) => l),
        };
        try {
          if (editing) await api('PUT', '/api/v1/report-schedules/' + editing.id, body);
          else await api('POST', '/api/v1/report-schedules', body);
          notify(t(editing ? 'sched.saved' : 'sched.created'));
          reset();
          load();
        } catch (e) {
          notifyError(e);
        }
      },
    },
  },
  formTitle,
  h('p.note', t('sched.form_intro')),
  h('div.form-grid',
    h('label.field', { for: 's-report' }, h('span.field-label', t('sched.report')), report),
    h('label.field', { for: 's-period' }, h('span.field-label', t('rep.period')), period),
    h('label.field', { for: 's-every' }, h('span.field-label', t('sched.every')), every),
    h('label.field', { for: 's-at' }, h('span.field-label', t('sched.at')), at),
    h('label.field', { for: 's-zone' }, h('span.field-label', t('sched.zone')), zone),
    h('label.field', { for: 's-format' }, h('span.field-label', t('sched.format')), format)),
  h('label.field', { for: 's-recipients' }, h('span.field-label', t('sched.recipients')), recipients),
  h('div.form-actions', cancelEdit, ' ', h('button.btn.btn-primary', { type: 'submit', 'data-test': 'sched-save' }, t('sched.save'))));

  const schedBody = h('tbody');
  const schedTable = h('table.plain-table', { 'data-test': 'schedules', 'aria-label': t('sched.title') },
    h('thead', h('tr',
      h('th', t('sched.report')), h('th', t('rep.period')), h('th', t('sched.every')),
      h('th', t('sched.at')), h('th', t('sched.format')), h('th', t('sched.recipients')),
      h('th', t('sched.next_run')), h('th', t('sched.last_run')), h('th', ''))),
    schedBody);
  const archBody = h('tbody');
  const archTable = h('table.plain-table', { 'data-test': 'archive', 'aria-label': t('sched.archive') },
    h('thead', h('tr',
      h('th', t('sched.made')), h('th', t('sched.report')), h('th', t('rep.period')),
      h('th', t('sched.range')), h('th', t('sched.mail')), h('th.num', t('sched.size')), h('th', ''))),
    archBody);

  main.append(h('h1.page-title', t('rep.title')),
    h('nav.report-tabs', { 'aria-label': t('rep.list') },
      h('a.report-tab', { href: '/reports', 'data-report': 'overview' }, t('rep.name.overview')),
      h('a.report-tab', { href: '/reports/schedules', 'aria-current': 'page', 'data-report': 'schedules' }, t('sched.title'))),
    h('h2.section-title', { 'data-test': 'report-title' }, t('sched.title')),
    h('p.note', t('sched.intro')),
    h('div.table-wrap', schedTable), form,
    h('h2.section-title', t('sched.archive')), h('p.note', t('sched.archive_intro')),
    h('div.table-wrap', archTable));

  function reset() {
    editing = null;
    form.reset();
    at.value = '06:00';
    zone.value = 'UTC';
    period.value = 'prev_day';
    formTitle.textContent = t('sched.new');
    cancelEdit.hidden = true;
  }

  function edit(s) {
    editing = s;
    report.value = s.report;
    period.value = s.period;
    every.value = s.every;
    at.value = s.at;
    zone.value = s.time_zone;
    format.value = s.format;
    recipients.value = s.recipients.join('\n');
    formTitle.textContent = t('sched.edit_title', { id: s.id });
    cancelEdit.hidden = false;
    report.focus();
    form.scrollIntoView({ block: 'nearest' });
  }

  async function runNow(s) {
    try {
      const a = await api('POST', '/api/v1/report-schedules/' + s.id + '/run');
      notify(t('sched.ran', { id: a.id }));
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  async function remove(s) {
    const ok = await modal({
      title: t('sched.remove_title'),
      body: [h('p', t('sched.remove_confirm', { report: t('rep.name.' + s.report), id: s.id }))],
      confirm: t('sched.remove'), cancel: t('action.cancel'), danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', '/api/v1/report-schedules/' + s.id);
      notify(t('sched.removed'));
      if (editing && editing.id === s.id) reset();
      load();
    } catch (e) {
      notifyError(e);
    }
  }

  const dateOr = (iso) => (iso ? formatDate(iso) : '—');

  async function load() {
    try {
      const [sd, ad] = await Promise.all([api('GET', '/api/v1/report-schedules'), api('GET', '/api/v1/report-archive')]);
      clear(schedBody);
      if (!sd.schedules.length) schedBody.append(h('tr', h('td.empty', { colspan: 9 }, t('sched.empty'))));
      for (const s of sd.schedules) {
        schedBody.append(h('tr', { 'data-id': String(s.id) },
          h('td', { 'data-col': 'report' }, t('rep.name.' + s.report)),
          h('td', { 'data-col': 'period' }, t('rep.period.' + s.period)),
          h('td', { 'data-col': 'every' }, t('sched.every.' + s.every)),
          h('td', { 'data-col': 'at' }, s.at + ' ' + s.time_zone),
          h('td', { 'data-col': 'format' }, s.format.toUpperCase()),
          h('td', { 'data-col': 'recipients' }, s.recipients.join(', ')),
          h('td', { 'data-col': 'next_run' }, dateOr(s.next_run)),
          h('td', { 'data-col': 'last_run' }, dateOr(s.last_run)),
          h('td.num.actions',
            h('button.btn.btn-small', { type: 'button', 'data-test': 'sched-edit', on: { click: () => edit(s) } }, t('sched.edit')),
            ' ',
            h('button.btn.btn-small', { type: 'button', 'data-test': 'sched-run', on: { click: () => runNow(s) } }, t('sched.run')),
            ' ',
            h('button.btn.btn-small.btn-danger-outline', { type: 'button', 'data-test': 'sched-remove', on: { click: () => remove(s) } }, t('sched.remove')))));
      }
      clear(archBody);
      if (!ad.reports.length) archBody.append(h('tr', h('td.empty', { colspan: 7 }, t('sched.archive_empty'))));
      for (const a of ad.reports) {
        const name = a.report + '-' + a.period + '-' + a.id + '.' + a.format;
        archBody.append(h('tr', { 'data-id': String(a.id) },
          h('td', { 'data-col': 'made' }, dateOr(a.created_at)),
          h('td', { 'data-col': 'report' }, t('rep.name.' + a.report)),
          h('td', { 'data-col': 'period' }, t('rep.period.' + a.period)),
          h('td', { 'data-col': 'range' }, dateOr(a.since) + ' – ' + dateOr(a.until)),
          h('td', { 'data-col': 'mail', title: a.mail.pending.join(', ') || null },
            t('sched.mail.' + a.mail.state, { n: a.mail.tries, at: dateOr(a.mail.next_try) })),
          h('td.num', { 'data-col': 'size' }, formatBytes(a.size)),
          h('td.num', h('a.btn.btn-small', { href: '/api/v1/report-archive/' + a.id, download: name, 'data-test': 'archive-download' },
            t('sched.download', { format: a.format.toUpperCase() })))));
      }
    } catch (e) {
      clear(schedBody).append(h('tr', h('td.empty.error', { colspan: 9 }, e.message)));
    }
  }
  load();
}
