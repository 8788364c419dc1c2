// Formatting of times, durations and numbers for display.


/** "12 s ago", "5 min ago", "3 h ago", "2 d ago", or "never". */
export function age(date, now = Date.now()) {
  const at = Date.parse(date);
  if (Number.isNaN(at)) return 'never';
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** "4.9 ms", "12 ms", "1.2 s"; "—" when unknown. */
export function ms(n) {
  const v = Number(n);
  if (n == null || !Number.isFinite(v)) return '—';
  if (v >= 1000) return `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)} s`;
  if (v >= 10 || Number.isInteger(v)) return `${Math.round(v)} ms`;
  return `${v.toFixed(v < 1 ? 2 : 1)} ms`;
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** A local, readable date and time; "—" when missing. */
export function dateTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateTimeFormat.format(d);
}

/** 0.9973 → "99.7 %"; "—" when unknown. */
export function pct(x) {
  const v = Number(x) * 100;
  if (x == null || !Number.isFinite(v)) return '—';
  return `${v === 100 || v === 0 ? v.toFixed(0) : v.toFixed(v > 99 ? 2 : 1)} %`;
}

export const count = new Intl.NumberFormat('en').format;

/** "in 3 days", "2 days ago": a whole-day distance for certificate expiry. */
export function days(iso, now = Date.now()) {
  const d = Math.round((Date.parse(iso) - now) / 86400000);
  if (d === 0) return 'today';
  const n = `${Math.abs(d)} day${Math.abs(d) === 1 ? '' : 's'}`;
  return d > 0 ? `in ${n}` : `${n} ago`;
}
