// The last 24 h of checks (raw, and rolled up into 5-minute buckets once older than the detail window):
// an SVG bar per 30 min (height: mean latency; colour: outcome), uptime, an hourly table.

import { h, svg } from '../dom.js';
import { ms, pct, count } from '../format.js';
import { table } from './page-kit.js';

const HOURS = 24;
const BUCKETS = 48;
const WIDTH = 720;
const HEIGHT = 112;
const PLOT = 110;

// Raw checks and the 5-minute roll-ups of older ones (`rolled`) alike: a roll-up counts its
// checks and failures, and its median latency stands for each of its passing checks.
function bucketize(checks, rolled, from, to, n) {
  const span = (to - from) / n;
  const buckets = Array.from({ length: n }, (_, i) => ({ start: from + i * span, ok: 0, failed: 0, latency: 0 }));
  const slot = (t) => (t >= from && t <= to ? buckets[Math.min(n - 1, Math.floor((t - from) / span))] : null);
  for (const c of checks) {
    const b = slot(Date.parse(c.at));
    if (!b) continue;
    if (c.ok) { b.ok += 1; b.latency += c.latency_ms; } else b.failed += 1;
  }
  for (const r of rolled) {
    const b = slot(Date.parse(r.start));
    if (!b) continue;
    const ok = r.checks - r.failures;
    b.ok += ok; b.failed += r.failures; b.latency += ok * (r.latency_p50_ms || 0);
  }
  for (const b of buckets) b.mean = b.ok ? b.latency / b.ok : null;
  return buckets;
}

/** Totals of raw checks and roll-ups: checks, passing, and the latency sum of the passing. */
function totals(checks, rolled) {
  let all = checks.length; let ok = 0; let latency = 0;
  for (const c of checks) if (c.ok) { ok += 1; latency += c.latency_ms; }
  for (const r of rolled) {
    const passed = r.checks - r.failures;
    all += r.checks; ok += passed; latency += passed * (r.latency_p50_ms || 0);
  }
  return { all, ok, latency };
}

const outcome = (b) => (b.failed ? (b.ok ? 'mixed' : 'failed') : b.ok ? 'ok' : 'none');

const OUTCOME_TEXT = { none: 'no checks', ok: 'all checks passed', mixed: 'some checks failed', failed: 'all checks failed' };

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

/** The chart for {health, checks, buckets} of GET /connections/{id}/health; `limited`: the answer was cut at its limit. */
export function healthChart({ health, checks, buckets: rolled = [] }, { now = Date.now(), limited = false } = {}) {
  const from = now - HOURS * 3600 * 1000;
  const buckets = bucketize(checks, rolled, from, now, BUCKETS);
  const sum = totals(checks, rolled);
  const uptime = health.uptime_24h ?? (sum.all ? sum.ok / sum.all : null);
  const meanLatency = sum.ok ? sum.latency / sum.ok : null;
  const max = Math.max(1, ...buckets.map((b) => b.mean || 0));

  const barWidth = WIDTH / BUCKETS;
  const bars = buckets.map((b, i) => {
    const kind = outcome(b);
    const height = kind === 'none' ? 3 : kind === 'failed' ? PLOT : Math.max(6, (b.mean / max) * PLOT);
    return svg('rect', {
      class: `bar bar--${kind}`,
      x: (i * barWidth + 1).toFixed(1),
      y: (PLOT - height).toFixed(1),
      width: (barWidth - 2).toFixed(1),
      height: height.toFixed(1),
    }, svg('title', null, `${timeFormat.format(b.start)}: ${OUTCOME_TEXT[kind]}${b.ok + b.failed ? ` (${b.ok + b.failed} checks${b.mean !== null ? `, mean ${ms(b.mean)}` : ''})` : ''}`));
  });

  const label = sum.all
    ? `Health over the last 24 hours: uptime ${pct(uptime)}, ${count(sum.all)} checks, ${count(sum.all - sum.ok)} failed${meanLatency !== null ? `, mean latency ${ms(meanLatency)}` : ''}.`
    : 'Health over the last 24 hours: no checks recorded.';

  const chart = svg('svg', {
    class: 'health-chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': label,
    preserveAspectRatio: 'none',
  },
  svg('line', { class: 'axis', x1: 0, y1: PLOT + 0.5, x2: WIDTH, y2: PLOT + 0.5 }),
  bars);
  const axis = h('div.chart-axis', { 'aria-hidden': 'true' },
    h('span', null, '24 h ago'), h('span', null, '12 h ago'), h('span', null, 'now'));

  // An hourly table: the chart's data as text.
  const hourly = bucketize(checks, rolled, from, now, HOURS).reverse();
  const hours = table('Checks per hour, newest first',
    ['Hour from', ['Checks', 'num'], ['Failed', 'num'], ['Mean latency', 'num']],
    hourly.map((b) => h('tr', null,
      h('td', null, timeFormat.format(b.start)), h('td.num', null, count(b.ok + b.failed)),
      h('td.num', null, count(b.failed)), h('td.num', null, ms(b.mean)))), 'table--compact');

  return h('div', null,
    h('p', null, h('span.uptime-value', null, pct(uptime)), ' uptime in the last 24 hours',
      meanLatency !== null ? h('span.muted', null, ` · mean latency ${ms(meanLatency)}`) : null),
    h('div.chart-frame', null, chart, axis,
      h('p.chart-scale.muted', null, `Bar height: mean latency of passing checks (tallest ${ms(max)}). Red: all checks failed; amber: some failed; grey: no checks.`)),
    limited ? h('p.muted', null, `Only the latest ${count(checks.length)} checks are drawn.`) : null,
    h('details.chart-data', null, h('summary', null, 'Checks per hour as a table'), hours));
}
