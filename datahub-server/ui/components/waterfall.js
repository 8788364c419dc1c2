// A test report as a step waterfall (each step's bar and time), then the outcome, error kind and hint.

import { h } from '../dom.js';
import { ms } from '../format.js';

const LABELS = {
  config: 'Settings', resolve: 'DNS', policy: 'Policy', tcp: 'TCP', tls: 'TLS',
  startup: 'Startup', auth: 'Auth', query: 'Query',
};

/** A step's name: tcp → "TCP". */
export const stepName = (step) => LABELS[step] || step;

/** Human words for an error kind: auth_failed → "auth failed". */
export function kindText(kind) {
  return String(kind || 'error').replace(/_/g, ' ');
}

export function waterfall(report) {
  const { steps = [], total_ms: totalMs, step, sqlstate, hint } = report;
  const total = Math.max(Number(totalMs) || 0, steps.reduce((sum, s) => sum + (Number(s.ms) || 0), 0), 0.001);
  const summary = report.ok
    ? h('p.report-summary.report-summary--ok', null,
      h('span.report-mark', { 'aria-hidden': 'true' }, '✓'),
      h('strong', null, 'Test passed'), ` in ${ms(totalMs)}.`)
    : h('div.report-summary.report-summary--error', null,
      h('p', null,
        h('span.report-mark', { 'aria-hidden': 'true' }, '✕'),
        h('strong', null, `Test failed: ${kindText(report.error_kind)}`),
        step ? ` at step ${stepName(step)}` : '', sqlstate ? ` (SQLSTATE ${sqlstate})` : '', '.'),
      hint ? h('p.report-hint', null, h('strong', null, 'Hint: '), hint) : null);
  let start = 0;
  const rows = steps.map((s) => {
    const value = Number(s.ms) || 0;
    const bar = h('span', { class: `wf-bar${s.ok ? '' : ' wf-bar--error'}` });
    bar.style.marginLeft = `${(start / total) * 100}%`;
    bar.style.width = `${Math.max((value / total) * 100, 0.5)}%`;
    start += value;
    return h('li.wf-step', null,
      h('span.wf-name', null, stepName(s.name)),
      h('span.wf-track', { 'aria-hidden': 'true' }, bar),
      h('span.wf-ms', null, ms(value), s.ok ? '' : h('span.wf-failed', null, ' failed')));
  });
  return h('div', null,
    summary,
    rows.length ? h('ol.waterfall', { 'aria-label': 'Test steps with their times' }, rows) : null);
}
