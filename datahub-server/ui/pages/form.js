// New and edit connection form: URL paste, draft test with the waterfall, save (test_first or If-Match).

import { h, replace } from '../dom.js';
import { get, post, patch, describe, isStatus } from '../api.js';
import { field, selectField, textareaField, checkbox, showErrors, showApiError } from '../components/field.js';
import { waterfall } from '../components/waterfall.js';
import { count } from '../format.js';
import { parsePgUrl, looksLikeUrl } from '../components/url-parse.js';
import { notice, refuse, loadOr, readFileText, btn, submit } from '../components/page-kit.js';

const MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
const WEAK = ' (not encrypted/unverified)';
const MODE_NOTES = [WEAK, WEAK, WEAK, ' (encrypted, unverified)', ' (verifies the CA)', ' (verifies CA and host)'];
// Form key → [label, path in the API's connection, default of a new one (none: a secret)].
const FIELDS = {
  url: ['Connection URL'],
  name: ['Name', 'name', ''],
  description: ['Description', 'description', ''],
  host: ['Host', 'host', ''],
  port: ['Port', 'port', '5432'],
  database: ['Database', 'database', ''],
  username: ['Username', 'username', ''],
  password: ['Password', 'password'],
  tls_mode: ['TLS mode', 'tls.mode', 'verify-full'],
  channel_binding: ['Channel binding', 'tls.channel_binding', 'prefer'],
  ca: ['CA certificate', 'tls.ca_cert_pem', ''],
  cert: ['Client certificate', 'tls.client_cert_pem', ''],
  key: ['Client key', 'tls.client_key_pem'],
  tags: ['Tags', 'tags', ''],
  app_name: ['Application name', 'options.application_name', ''],
  timeout: ['Connect timeout (ms)', 'options.connect_timeout_ms', ''],
  monitor: ['Monitor this connection', 'monitoring.enabled', true],
  interval: ['Check interval (seconds)', 'monitoring.interval_s', '60'],
  slow: ['Slow above (ms)', 'monitoring.slow_ms', '1000'],
};
const KEYS = Object.keys(FIELDS).filter((k) => FIELDS[k][2] !== undefined);
const SECRETS = ['password', 'key'];
const BY_PATH = Object.fromEntries(Object.keys(FIELDS).map((k) => [FIELDS[k][1], k]));
const INTS = ['port', 'timeout', 'interval', 'slow'];
const KIND_FIELD = {
  dns_failed: 'host', blocked_by_policy: 'host', connection_refused: 'port', auth_failed: 'password',
  auth_method_refused: 'password', database_not_found: 'database',
};
const STEP_FIELD = { resolve: 'host', policy: 'host', tcp: 'port', tls: 'tls_mode', auth: 'password' };

const pointedField = (r) => KIND_FIELD[r.error_kind]
  || (String(r.error_kind).startsWith('tls_') ? 'tls_mode' : STEP_FIELD[r.step]) || null;

const tagList = (t) => t.split(',').map((x) => x.trim()).filter(Boolean);
const blank = (x) => typeof x === 'string' && !x.trim();
/** A form value as the API takes it. */
const apiValue = (k, x) => (INTS.includes(k) ? Number(x.trim()) : k === 'tags' ? tagList(x) : k === 'name' || k === 'host' ? x.trim() : x);
/** Sets a dotted path ("tls.mode") in an object. */
function setPath(o, path, x) {
  const keys = path.split('.');
  const last = keys.pop();
  for (const k of keys) o = o[k] ??= {};
  o[last] = x;
}
const snapshotOf = (c) => Object.fromEntries(KEYS.map((k) => {
  const x = FIELDS[k][1].split('.').reduce((o, p) => o[p], c);
  return [k, k === 'monitor' ? x : k === 'tags' ? x.join(', ') : String(x ?? '')];
}));

export async function mount(root, ctx) {
  const id = ctx.params.id || null;
  const what = id ? 'Edit connection' : 'New connection';
  ctx.title(what);
  if (!id && !ctx.can('connection.create')) {
    return refuse(root, ctx, what, `Your role (${ctx.me.role}) may not create connections. Ask an admin for the editor role.`);
  }
  let conn = null;
  let version = null;
  if (id) {
    const r = await loadOr(root, ctx, what, 'this connection', () => get(`/connections/${id}`));
    if (!r) return;
    conn = r.data;
    version = r.etag ?? conn.version;
    if (conn.access !== 'manage') return refuse(root, ctx, what, 'You may view this connection but not edit it: editing needs the manage grant.');
  }
  let floor = null;
  try {
    floor = (await get('/policy')).data.min_tls_mode;
  } catch (e) {
    if (isStatus(e, 401)) throw e;
  }
  if (!ctx.current) return;

  const canTest = ctx.can('connection.test_draft');
  let initial = conn ? snapshotOf(conn) : Object.fromEntries(KEYS.map((k) => [k, FIELDS[k][2]]));
  // A tested secret is held here only (its input is emptied) until Save sends it or the page goes.
  const held = { password: null, key: null };
  let busy = false;
  const floorAt = MODES.indexOf(floor);

  const label = (k) => FIELDS[k][0];
  const text = (k, hint, o = {}) => field({ label: label(k), name: k, hint, ...o });
  const num = (k, hint) => text(k, hint, { attrs: { inputmode: 'numeric' } });
  const pem = (k, hint) => textareaField({ label: label(k), name: k, hint, rows: 3, attrs: { spellcheck: 'false', autocomplete: 'off' } });
  const F = {
    url: text('url', 'Optional. Paste a postgresql:// URL to fill the fields below; a password in it moves to the Password field.', { attrs: { inputmode: 'url' } }),
    name: text('name', 'Lowercase letters, digits, “_”, “.” and “-”; up to 64 characters.', { required: true }),
    description: textareaField({ label: label('description'), name: 'description', rows: 2, hint: 'Optional, up to 1,000 characters.' }),
    host: text('host', 'A host name or IP address, without the port.', { required: true }),
    port: num('port', 'Usually 5432.'),
    database: text('database', null, { required: true }),
    username: text('username', null, { required: true }),
    password: field({
      label: label('password'), name: 'password', type: 'password', required: !id, autocomplete: 'new-password',
      hint: id ? 'Leave blank to keep the stored password. Changing the host, port, database or lowering TLS needs it again.' : 'Stored encrypted; never shown again.',
    }),
    tls_mode: selectField({
      label: label('tls_mode'), name: 'tls_mode', options: MODES.map((m, i) => [m, m + MODE_NOTES[i]]),
      hint: floor === null ? 'The server’s policy sets a minimum mode; a weaker one is refused on save.'
        : floorAt > 0 ? `The server’s policy requires at least ${floor}: weaker modes are disabled.` : 'The server’s policy allows every mode.',
    }),
    channel_binding: selectField({
      label: label('channel_binding'), name: 'channel_binding', options: ['disable', 'prefer', 'require'],
      hint: 'SCRAM channel binding over TLS; prefer uses it when the server offers it.',
    }),
    ca: pem('ca', 'Optional PEM. Without one, the public roots are trusted.'),
    cert: pem('cert', 'Optional PEM, together with the client key.'),
    key: pem('key', conn && conn.client_key_set ? 'A key is stored: leave blank to keep it. Clearing the client certificate removes both.' : 'Optional PEM private key; stored encrypted, never shown again.'),
    tags: text('tags', 'Optional, comma-separated, e.g. prod, billing (up to 20).'),
    app_name: text('app_name', 'Optional; shown in pg_stat_activity.'),
    timeout: num('timeout', '1 to 5,000. Default: 5,000.'),
    monitor: checkbox({ label: label('monitor'), name: 'monitor' }),
    interval: num('interval', '10 to 86,400.'),
    slow: num('slow', 'A check slower than this counts as degraded: 1 to 60,000.'),
  };
  const filePicker = (k) => {
    const input = h('input', { type: 'file', id: `file-${k}`, class: 'file', accept: '.pem,.crt,.cer,.key,text/plain' });
    input.addEventListener('change', async () => {
      const file = input.files[0];
      if (!file) return;
      try {
        F[k].input.value = await readFileText(file);
        F[k].setError(null);
        ctx.announce(`${label(k)} loaded from the file.`);
      } catch (e) {
        F[k].setError(e.message);
      }
      input.value = '';
    });
    return h('div.field.field--file', null, h('label.field-label', { for: input.id }, `${label(k)} file`), input);
  };
  const setModeOptions = (current) => {
    for (const o of F.tls_mode.input.options) o.disabled = floorAt > 0 && MODES.indexOf(o.value) < floorAt && o.value !== current;
  };
  const prop = (k) => (k === 'monitor' ? 'checked' : 'value');
  const fill = (v) => { for (const [k, x] of Object.entries(v)) F[k].input[prop(k)] = x; };
  const read = () => Object.fromEntries(KEYS.map((k) => [k, F[k].input[prop(k)]]));
  const secret = (k) => F[k].input.value || held[k];

  // The URL field: a half-typed URL stays quiet; a paste or leaving the field says why.
  const urlNote = h('p.field-note', { hidden: true });
  F.url.el.append(urlNote);
  function applyUrl(show) {
    const value = F.url.input.value;
    const r = value.trim() ? parsePgUrl(value) : null;
    if (!r || !r.ok) {
      if (!r || show) F.url.setError(r && (looksLikeUrl(value) ? r.message : 'A connection URL starts with postgresql:// or postgres://.'));
      return;
    }
    F.url.setError(null);
    const v = r.values;
    fill({
      host: v.host, port: v.port || '5432', tls_mode: v.sslmode || 'verify-full', app_name: v.application_name || '',
      timeout: v.connect_timeout_ms || '', ...(v.database !== undefined && { database: v.database }),
      ...(v.username !== undefined && { username: v.username }), ...(v.channel_binding && { channel_binding: v.channel_binding }),
    });
    const mode = F.tls_mode.input.value;
    F.tls_mode.setError(floorAt > 0 && MODES.indexOf(mode) < floorAt ? `sslmode=${mode} in the URL is below the policy’s minimum: choose ${floor} or stronger.` : null);
    const notes = ['Fields filled from the URL.'];
    if (r.hadPassword) {
      if (v.password !== undefined) { F.password.input.value = v.password; held.password = null; }
      F.url.input.value = r.stripped;
      notes.push('Its password moved to the Password field and was removed from the URL.');
    }
    if (r.certKeys.length) notes.push(`The URL names files (${r.certKeys.join(', ')}): paste them or pick them under Certificates.`);
    if (urlNote.hidden || r.hadPassword) ctx.announce(notes.join(' '));
    urlNote.textContent = notes.join(' ');
    urlNote.hidden = false;
  }
  F.url.input.addEventListener('paste', () => setTimeout(() => applyUrl(true)));
  F.url.input.addEventListener('input', () => applyUrl(false));
  F.url.input.addEventListener('change', () => applyUrl(true));
  // Typing a new secret replaces the one held from a test.
  const heldNote = h('p.field-note', { hidden: true }, 'The password you tested is kept for Save (not shown). Type here to replace it.');
  F.password.el.append(heldNote);
  F.password.input.addEventListener('input', () => { held.password = null; heldNote.hidden = true; });
  F.key.input.addEventListener('input', () => { held.key = null; });

  const summaryBox = h('div');
  const conflictBox = h('div');
  const result = h('div.result', { role: 'status', 'aria-live': 'polite' });
  const testFirst = checkbox({ label: 'Only save if the test passes', name: 'test_first', checked: canTest, hint: 'Runs the connection test first and saves nothing when it fails.' });
  const testButton = btn('Test connection', () => runTest());
  const saveButton = submit('Save');
  const back = id ? `/connections/${id}` : '/connections';
  // Certificates are rarely needed: folded away unless set (an error there unfolds them).
  const certs = h('details.more', { open: !!(initial.ca || initial.cert || (conn && conn.client_key_set)) },
    h('summary', null, 'Certificates and client key'),
    ['ca', 'cert', 'key'].map((k) => {
      const set = F[k].setError;
      F[k].setError = (m) => { if (m) certs.open = true; set(m); };
      return [F[k].el, filePicker(k)];
    }));
  const group = (legend, ...keys) => h('fieldset.fieldset', null, h('legend', null, legend), keys.map((k) => (F[k] ? F[k].el : k)));
  const form = h('form.conn-form', { novalidate: true, 'aria-labelledby': 'form-title', on: { submit: (e) => { e.preventDefault(); save(); } } },
    summaryBox, conflictBox, F.url.el,
    group('Connection', 'name', 'description', 'host', 'port', 'database'),
    group('Credentials', 'username', 'password'),
    group('TLS', 'tls_mode', 'channel_binding', certs),
    group('Tags and options', 'tags', 'app_name', 'timeout'),
    group('Monitoring', 'monitor', 'interval', 'slow'),
    canTest ? h('div.actions', null, testButton) : null,
    result,
    canTest ? testFirst.el : null,
    h('div.form-actions', null, saveButton, h('a.button.button--link', { href: back }, 'Cancel')));
  replace(root,
    h('p.breadcrumb', null, h('a', { href: back }, conn ? `Back to ${conn.name}` : 'Back to connections')),
    h('h1', { id: 'form-title' }, conn ? `Edit ${conn.name}` : what),
    conn ? null : h('p.lead', null, 'Paste a connection URL to fill the fields, or fill them one by one. Test connection times each step.'),
    form);
  fill(initial);
  setModeOptions(initial.tls_mode);

  function localErrors(v, forTest) {
    const errs = [];
    for (const k of ['name', 'host', 'database', 'username'].slice(forTest ? 1 : 0)) {
      if (!v[k].trim()) errs.push({ key: k, message: `Enter the ${label(k).toLowerCase()}` });
    }
    if (!id && !forTest && !secret('password')) errs.push({ key: 'password', message: 'Enter the password' });
    for (const [k, min, max] of [['port', 1, 65535], ['timeout', 1, 5000], ['interval', 10, 86400], ['slow', 1, 60000]]) {
      const t = v[k].trim();
      if ((t || k !== 'timeout') && !(/^\d+$/.test(t) && +t >= min && +t <= max)) {
        errs.push({ key: k, message: `${label(k)} must be a whole number from ${count(min)} to ${count(max)}` });
      }
    }
    return errs;
  }

  // Every field with a value; blank optional ones are left to the API's defaults.
  function draftBody(v) {
    const body = {};
    for (const k of Object.keys(FIELDS)) {
      const x = SECRETS.includes(k) ? secret(k) : v[k];
      if (x && !blank(x) || x === false || k === 'tags') setPath(body, FIELDS[k][1], apiValue(k, x));
    }
    return body;
  }

  // A test needs only what reaching the server takes: a bad name or tag must not block it.
  function testBody(v) {
    const { name, description, tags, monitoring, ...body } = draftBody(v);
    if (id) body.id = id;
    return body;
  }

  // Only the changed fields; `null` removes an optional one (a blank timeout is the default).
  function patchBody(v) {
    const b = {};
    if (v.cert !== initial.cert && blank(v.cert)) setPath(b, 'tls.client_key_pem', null);
    for (const k of Object.keys(FIELDS)) {
      if (SECRETS.includes(k)) {
        if (secret(k)) setPath(b, FIELDS[k][1], secret(k));
      } else if (k === 'tags' ? tagList(v.tags).join() !== tagList(initial.tags).join() : v[k] !== initial[k]) {
        setPath(b, FIELDS[k][1], k !== 'tags' && blank(v[k]) ? (k === 'timeout' ? 5000 : null) : apiValue(k, v[k]));
      }
    }
    return b;
  }

  // Empties the secret inputs; what was typed is held for Save unless `drop`.
  function scrub(drop) {
    for (const k of SECRETS) {
      held[k] = drop ? null : secret(k) || null;
      F[k].input.value = '';
    }
    heldNote.hidden = !held.password;
  }

  function setBusy(on) {
    busy = on;
    testButton.disabled = on;
    saveButton.disabled = on;
    form.setAttribute('aria-busy', String(on));
  }

  function showReport(report, lead) {
    replace(result, lead ? notice('error', lead) : null, waterfall(report));
    if (report.ok) { ctx.announce('Test passed.'); return; }
    const k = pointedField(report);
    if (k === 'password') held.password = null;
    heldNote.hidden = !held.password;
    if (k) {
      F[k].setError(`The test failed here: ${report.hint || report.error_kind}`);
      F[k].input.focus();
    }
  }

  // API field errors (400 with `field`, 409 on the name) go next to their field and on top.
  function showFailure(e, what) {
    if (isStatus(e, 401)) return;
    if (isStatus(e, 400, 409)) {
      const m = /^tags\[(\d+)\]$/.exec(e.field);
      replace(result);
      showApiError(summaryBox, F, e, m ? 'tags' : BY_PATH[e.field || (e.status === 409 ? 'name' : '')], m ? `Tag ${+m[1] + 1}: ` : '');
      return;
    }
    replace(result, notice('error', `${what}: ${describe(e)}`));
  }

  async function runTest() {
    const v = read();
    const errs = localErrors(v, true);
    showErrors(summaryBox, F, errs);
    if (busy || errs.length) return;
    setBusy(true);
    replace(result, h('p.testing', null, 'Testing the connection…'));
    try {
      const { data } = await post('/connections/test', testBody(v));
      scrub();
      showReport(data);
    } catch (e) {
      scrub();
      showFailure(e, 'The test could not run');
    } finally {
      setBusy(false);
    }
  }

  async function save() {
    const v = read();
    const errs = localErrors(v, false);
    showErrors(summaryBox, F, errs);
    if (busy || errs.length) return;
    replace(conflictBox);
    const wantTest = canTest && testFirst.input.checked;
    const failed = 'The test failed, so nothing was saved.';
    setBusy(true);
    replace(result, wantTest ? h('p.testing', null, 'Testing, then saving…') : null);
    try {
      let r;
      if (id) {
        const body = patchBody(v);
        if (!Object.keys(body).length) {
          replace(result, notice('info', 'Nothing changed: there is nothing to save.'));
          return;
        }
        if (wantTest) {
          const { data } = await post('/connections/test', testBody(v));
          if (!data.ok) { scrub(); showReport(data, failed); return; }
        }
        r = await patch(`/connections/${id}`, body, version);
      } else {
        r = await post('/connections', draftBody(v), { query: { test_first: wantTest ? 'true' : null } });
      }
      scrub(true);
      ctx.announce(`Saved ${r.data.name}.`);
      ctx.navigate(`/connections/${r.data.id}`);
    } catch (e) {
      scrub();
      if (isStatus(e, 422) && e.body && e.body.report) showReport(e.body.report, failed);
      else if (isStatus(e, 412)) showConflict();
      else showFailure(e, 'Not saved');
    } finally {
      setBusy(false);
    }
  }

  function showConflict() {
    replace(result);
    const reload = btn('Reload', () => reloadKeeping(reload));
    replace(conflictBox, h('div.notice.notice--warning', { role: 'alert' },
      h('p', null, h('strong', null, 'This connection was changed by someone else meanwhile.'),
        ' Nothing was saved. Reload to get their version: the values you typed are kept.'),
      h('p', null, reload)));
    reload.focus();
  }

  // Fetches the current version; a field the user changed keeps the typed value.
  async function reloadKeeping(button) {
    button.disabled = true;
    try {
      const r = await get(`/connections/${id}`);
      const fresh = snapshotOf(r.data);
      const typed = read();
      fill(Object.fromEntries(KEYS.map((k) => [k, typed[k] !== initial[k] ? typed[k] : fresh[k]])));
      initial = fresh;
      version = r.etag ?? r.data.version;
      setModeOptions(initial.tls_mode);
      const done = 'Reloaded the current version; your changes are kept. Review them and save again.';
      replace(conflictBox, notice('info', done));
      ctx.announce(done);
      saveButton.focus();
    } catch (e) {
      button.disabled = false;
      replace(conflictBox, notice('error', `Could not reload: ${describe(e)}`));
    }
  }

  return () => scrub(true);
}
