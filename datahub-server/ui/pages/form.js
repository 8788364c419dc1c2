// New and edit connection form: /connections/new and /connections/{id}/edit.
//
// A pasted postgresql:// URL fills the fields (its password moves to Password and leaves the
// URL). Test connection runs the draft test and shows the step waterfall or the classified
// error, focusing the field it points at. Save creates (optionally `test_first`) or PATCHes the
// changed fields with If-Match; a 412 offers a reload that keeps what the user typed.
// Secrets: after a test or a save the password and key inputs are emptied; a secret the user
// typed and tested is held in this module's memory only until Save sends it or the page goes.

import { h, replace } from '../dom.js';
import { get, post, patch, ApiError, describe } from '../api.js';
import { field, selectField, textareaField } from '../components/field.js';
import { waterfall } from '../components/waterfall.js';
import { parsePgUrl, looksLikeUrl } from '../components/url-parse.js';
import { notice, refuse, loadError, checkbox, showErrors, fieldMessage, readFileText } from '../components/page-kit.js';

const MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
const MODE_LABELS = {
  disable: 'disable (not encrypted/unverified)',
  allow: 'allow (not encrypted/unverified)',
  prefer: 'prefer (not encrypted/unverified)',
  require: 'require (encrypted, unverified)',
  'verify-ca': 'verify-ca (verifies the CA)',
  'verify-full': 'verify-full (verifies CA and host)',
};
const DEFAULTS = {
  name: '', description: '', host: '', port: '5432', database: '', username: '',
  tls_mode: 'verify-full', channel_binding: 'prefer', ca: '', cert: '', tags: '',
  app_name: '', timeout: '', monitor: true, interval: '60', slow: '1000',
};

// The form key each API field path names.
const API_FIELDS = {
  name: 'name', description: 'description', host: 'host', port: 'port', database: 'database',
  username: 'username', password: 'password', 'tls.mode': 'tls_mode',
  'tls.channel_binding': 'channel_binding', 'tls.ca_cert_pem': 'ca', 'tls.client_cert_pem': 'cert',
  'tls.client_key_pem': 'key', tags: 'tags', 'options.application_name': 'app_name',
  'options.connect_timeout_ms': 'timeout', 'monitoring.interval_s': 'interval',
  'monitoring.slow_ms': 'slow', 'monitoring.enabled': 'monitor',
};

/** The field a failed test points at. */
function pointedField(report) {
  const kind = report.error_kind || '';
  if (kind === 'dns_failed' || kind === 'blocked_by_policy') return 'host';
  if (kind === 'connection_refused') return 'port';
  if (kind === 'auth_failed' || kind === 'auth_method_refused') return 'password';
  if (kind === 'database_not_found') return 'database';
  if (kind.startsWith('tls_')) return 'tls_mode';
  return { resolve: 'host', policy: 'host', tcp: 'port', tls: 'tls_mode', auth: 'password' }[report.step] || null;
}

function snapshotOf(c) {
  return {
    name: c.name, description: c.description || '', host: c.host, port: String(c.port),
    database: c.database, username: c.username, tls_mode: c.tls.mode,
    channel_binding: c.tls.channel_binding, ca: c.tls.ca_cert_pem || '', cert: c.tls.client_cert_pem || '',
    tags: (c.tags || []).join(', '), app_name: c.options.application_name || '',
    timeout: String(c.options.connect_timeout_ms), monitor: !!c.monitoring.enabled,
    interval: String(c.monitoring.interval_s), slow: String(c.monitoring.slow_ms),
  };
}

const tagList = (text) => String(text).split(',').map((t) => t.trim()).filter(Boolean);

export async function mount(root, ctx) {
  const id = ctx.params.id || null;
  const editing = !!id;
  ctx.title(editing ? 'Edit connection' : 'New connection');
  if (!editing && !ctx.can('connection.create')) {
    refuse(root, ctx, 'New connection',
      `Your role (${ctx.me.role}) may not create connections. Ask an admin for the editor role, or for a grant on an existing connection.`);
    return undefined;
  }

  let conn = null;
  let version = null;
  if (editing) {
    try {
      const r = await get(`/connections/${id}`);
      conn = r.data;
      version = r.etag ?? conn.version;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) throw e;
      refuse(root, ctx, 'Edit connection', loadError(e, 'this connection'));
      return undefined;
    }
    const manager = ctx.me.role === 'admin' || conn.owner === ctx.me.id
      || await get(`/connections/${id}/grants`).then(() => true, () => false);
    if (!manager) {
      refuse(root, ctx, 'Edit connection', 'You may view this connection but not edit it: editing needs the manage grant.');
      return undefined;
    }
  }
  let floor = null;
  let policyKnown = false;
  try {
    floor = (await get('/policy')).data.min_tls_mode;
    policyKnown = true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) throw e;
  }
  if (!ctx.current) return undefined;

  const canTest = ctx.can('connection.test_draft');
  let initial = editing ? snapshotOf(conn) : { ...DEFAULTS };
  // Secrets typed and tested, kept out of the DOM until Save sends them.
  const held = { password: null, key: null };
  let busy = false;

  // ---- fields ----
  const F = {};
  F.url = field({
    label: 'Connection URL', name: 'url', autocomplete: 'off',
    hint: 'Optional. Paste a postgresql:// URL to fill the fields below; a password in it moves to the Password field.',
    attrs: { spellcheck: 'false', inputmode: 'url' },
  });
  F.name = field({ label: 'Name', name: 'name', required: true, autocomplete: 'off', hint: 'Lowercase letters, digits, “_”, “.” and “-”; up to 64 characters.', attrs: { spellcheck: 'false' } });
  F.description = textareaField({ label: 'Description', name: 'description', rows: 2, hint: 'Optional, up to 1,000 characters.' });
  F.host = field({ label: 'Host', name: 'host', required: true, autocomplete: 'off', hint: 'A host name or IP address, without the port.', attrs: { spellcheck: 'false' } });
  F.port = field({ label: 'Port', name: 'port', required: true, attrs: { inputmode: 'numeric' }, hint: 'Usually 5432.' });
  F.database = field({ label: 'Database', name: 'database', required: true, autocomplete: 'off', attrs: { spellcheck: 'false' } });
  F.username = field({ label: 'Username', name: 'username', required: true, autocomplete: 'off', attrs: { spellcheck: 'false' } });
  const pwHint = editing
    ? 'Leave blank to keep the stored password. Changing the host, port, database or lowering TLS needs it again.'
    : 'Stored encrypted; never shown again here.';
  F.password = field({ label: 'Password', name: 'password', type: 'password', required: !editing, autocomplete: 'new-password', hint: pwHint });
  const floorIndex = MODES.indexOf(floor);
  const modeOptions = MODES.map((m) => ({ value: m, label: MODE_LABELS[m] }));
  F.tls_mode = selectField({
    label: 'TLS mode', name: 'tls_mode', options: modeOptions,
    hint: policyKnown
      ? (floorIndex > 0 ? `The server’s policy requires at least ${floor}: weaker modes are disabled.` : 'The server’s policy allows every mode.')
      : 'The server enforces a minimum TLS mode set by its policy; a weaker mode is refused when you save.',
  });
  F.channel_binding = selectField({
    label: 'Channel binding', name: 'channel_binding',
    options: ['disable', 'prefer', 'require'].map((v) => ({ value: v, label: v })),
    hint: 'SCRAM channel binding over TLS: prefer uses it when the server offers it.',
  });
  const pem = { rows: 3, attrs: { spellcheck: 'false', autocomplete: 'off', class: 'input input--mono' } };
  F.ca = textareaField({ label: 'CA certificate', name: 'ca', hint: 'Optional PEM. Without one, the public roots are trusted. Paste it or pick a file below.', ...pem });
  F.cert = textareaField({ label: 'Client certificate', name: 'cert', hint: 'Optional PEM, together with the client key.', ...pem });
  F.key = textareaField({
    label: 'Client key', name: 'key', ...pem,
    hint: editing && conn.client_key_set ? 'A key is stored: leave blank to keep it. Clearing the client certificate removes both.' : 'Optional PEM private key; stored encrypted, never shown again.',
  });
  F.tags = field({ label: 'Tags', name: 'tags', autocomplete: 'off', hint: 'Optional, comma-separated, e.g. prod, billing (up to 20).' });
  F.app_name = field({ label: 'Application name', name: 'app_name', autocomplete: 'off', hint: 'Optional; shown in pg_stat_activity.' });
  F.timeout = field({ label: 'Connect timeout (ms)', name: 'timeout', attrs: { inputmode: 'numeric' }, hint: '1 to 5,000. Default: 5,000.' });
  const monitor = checkbox({ label: 'Monitor this connection', name: 'monitor' });
  F.monitor = { input: monitor.input, el: monitor.el, setError() {} };
  F.interval = field({ label: 'Check interval (seconds)', name: 'interval', attrs: { inputmode: 'numeric' }, hint: '10 to 86,400.' });
  F.slow = field({ label: 'Slow above (ms)', name: 'slow', attrs: { inputmode: 'numeric' }, hint: 'A check slower than this counts as degraded: 1 to 60,000.' });
  const labels = {
    name: 'Name', description: 'Description', host: 'Host', port: 'Port', database: 'Database',
    username: 'Username', password: 'Password', tls_mode: 'TLS mode', channel_binding: 'Channel binding',
    ca: 'CA certificate', cert: 'Client certificate', key: 'Client key', tags: 'Tags',
    app_name: 'Application name', timeout: 'Connect timeout', monitor: 'Monitoring',
    interval: 'Check interval', slow: 'Slow threshold', url: 'Connection URL',
  };
  for (const [k, f] of Object.entries(F)) f.label = labels[k];

  function filePicker(target, label) {
    const pickId = `file-${target}`;
    const input = h('input', { type: 'file', id: pickId, class: 'file', accept: '.pem,.crt,.cer,.key,text/plain' });
    input.addEventListener('change', async () => {
      const file = input.files && input.files[0];
      if (!file) return;
      try {
        F[target].input.value = await readFileText(file);
        F[target].setError(null);
        ctx.announce(`${labels[target]} loaded from the file.`);
      } catch (e) {
        F[target].setError(e.message);
      }
      input.value = '';
    });
    return h('div', { class: 'field field--file' }, h('label', { class: 'field-label', for: pickId }, label), input);
  }

  function setModeOptions(current) {
    [...F.tls_mode.input.options].forEach((o) => {
      o.disabled = floorIndex > 0 && MODES.indexOf(o.value) < floorIndex && o.value !== current;
    });
  }

  function fill(values) {
    for (const [k, v] of Object.entries(values)) {
      if (k === 'monitor') F.monitor.input.checked = !!v;
      else if (F[k]) F[k].input.value = v;
    }
  }
  function read() {
    const v = {};
    for (const k of Object.keys(DEFAULTS)) v[k] = k === 'monitor' ? F.monitor.input.checked : F[k].input.value;
    return v;
  }

  // ---- the URL field ----
  let urlFilled = false;
  function applyUrl(show) {
    const text = F.url.input.value;
    if (!text.trim()) { F.url.setError(null); return; }
    const r = parsePgUrl(text);
    if (!r.ok) {
      // While typing, a half-written URL stays quiet; a paste or leaving the field says why.
      if (show) F.url.setError(looksLikeUrl(text) ? r.message : 'A connection URL starts with postgresql:// or postgres://.');
      return;
    }
    F.url.setError(null);
    const v = r.values;
    F.host.input.value = v.host;
    F.port.input.value = v.port || '5432';
    if (v.database !== undefined) F.database.input.value = v.database;
    if (v.username !== undefined) F.username.input.value = v.username;
    F.tls_mode.input.value = v.sslmode || 'verify-full';
    if (v.channel_binding) F.channel_binding.input.value = v.channel_binding;
    F.app_name.input.value = v.application_name || '';
    F.timeout.input.value = v.connect_timeout_ms || '';
    if (floorIndex > 0 && MODES.indexOf(F.tls_mode.input.value) < floorIndex) {
      F.tls_mode.setError(`sslmode=${F.tls_mode.input.value} in the URL is below the policy’s minimum (${floor}): choose ${floor} or stronger.`);
    } else {
      F.tls_mode.setError(null);
    }
    if (r.hadPassword) {
      if (v.password !== undefined) { F.password.input.value = v.password; held.password = null; }
      F.url.input.value = r.stripped;
    }
    const notes = ['Fields filled from the URL.'];
    if (r.hadPassword) notes.push('Its password moved to the Password field and was removed from the URL.');
    if (r.certKeys.length) notes.push(`The URL names files (${r.certKeys.join(', ')}): paste them or pick them below.`);
    if (!urlFilled || r.hadPassword) ctx.announce(notes.join(' '));
    urlFilled = true;
    urlNote.textContent = notes.join(' ');
    urlNote.hidden = false;
  }
  const urlNote = h('p', { class: 'field-note', hidden: true });
  F.url.el.append(urlNote);
  F.url.input.addEventListener('paste', () => setTimeout(() => applyUrl(true), 0));
  F.url.input.addEventListener('input', () => applyUrl(false));
  F.url.input.addEventListener('change', () => applyUrl(true));

  // Typing a new secret replaces the one held from a test.
  F.password.input.addEventListener('input', () => { held.password = null; heldNote.hidden = true; });
  F.key.input.addEventListener('input', () => { held.key = null; });
  const heldNote = h('p', { class: 'field-note', hidden: true }, 'The password you tested is kept for Save (not shown). Type here to replace it.');
  F.password.el.append(heldNote);

  // ---- layout ----
  const summaryBox = h('div');
  const conflictBox = h('div');
  const result = h('div', { class: 'form-result', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'false' });
  const testFirst = checkbox({
    label: 'Only save if the test passes', name: 'test_first', checked: canTest,
    hint: 'Runs the connection test first and saves nothing when it fails.',
  });
  const testButton = h('button', { type: 'button', class: 'button button--secondary', on: { click: () => runTest() } }, 'Test connection');
  const saveButton = h('button', { type: 'submit', class: 'button button--primary' }, 'Save');
  const cancelHref = editing ? `/connections/${id}` : '/connections';
  // Certificates are rarely needed: folded away unless set (an error there unfolds them).
  const certs = h('details', { class: 'more', open: !!(initial.ca || initial.cert || (conn && conn.client_key_set)) },
    h('summary', null, 'Certificates and client key'),
    F.ca.el, filePicker('ca', 'CA certificate file'),
    F.cert.el, filePicker('cert', 'Client certificate file'),
    F.key.el, filePicker('key', 'Client key file'));
  for (const k of ['ca', 'cert', 'key']) {
    const set = F[k].setError;
    F[k].setError = (m) => { if (m) certs.open = true; set(m); };
  }
  const form = h('form', { class: 'conn-form', novalidate: true, 'aria-labelledby': 'form-title' },
    summaryBox, conflictBox,
    F.url.el,
    h('fieldset', { class: 'fieldset' }, h('legend', null, 'Connection'),
      F.name.el, F.description.el, F.host.el, F.port.el, F.database.el),
    h('fieldset', { class: 'fieldset' }, h('legend', null, 'Credentials'), F.username.el, F.password.el),
    h('fieldset', { class: 'fieldset' }, h('legend', null, 'TLS'),
      F.tls_mode.el, F.channel_binding.el, certs),
    h('fieldset', { class: 'fieldset' }, h('legend', null, 'Tags and options'), F.tags.el, F.app_name.el, F.timeout.el),
    h('fieldset', { class: 'fieldset' }, h('legend', null, 'Monitoring'), monitor.el, F.interval.el, F.slow.el),
    canTest ? h('div', { class: 'form-test' }, testButton) : null,
    result,
    canTest ? testFirst.el : null,
    h('div', { class: 'form-actions' }, saveButton, h('a', { href: cancelHref, class: 'button button--link' }, 'Cancel')));
  form.addEventListener('submit', (e) => { e.preventDefault(); save(); });

  replace(root,
    h('p', { class: 'breadcrumb' }, h('a', { href: cancelHref }, editing ? `Back to ${conn.name}` : 'Back to connections')),
    h('h1', { id: 'form-title' }, editing ? `Edit ${conn.name}` : 'New connection'),
    editing ? null : h('p', { class: 'lead' }, 'Paste a connection URL to fill the fields, or fill them one by one. Test connection shows how long each step takes.'),
    form);
  fill(initial);
  setModeOptions(initial.tls_mode);

  // ---- checks and bodies ----
  function localErrors(v, forTest) {
    const errs = [];
    const need = (k) => { if (!String(v[k]).trim()) errs.push({ key: k, message: `Enter the ${labels[k].toLowerCase()}` }); };
    if (!forTest) need('name');
    need('host'); need('database'); need('username');
    if (!editing && !forTest && !F.password.input.value && !held.password) errs.push({ key: 'password', message: 'Enter the password' });
    const num = (k, min, max, optional) => {
      const t = String(v[k]).trim();
      if (!t && optional) return;
      if (!/^\d+$/.test(t) || Number(t) < min || Number(t) > max) {
        errs.push({ key: k, message: `${labels[k]} must be a whole number from ${min.toLocaleString('en')} to ${max.toLocaleString('en')}` });
      }
    };
    num('port', 1, 65535);
    num('timeout', 1, 5000, true);
    num('interval', 10, 86400);
    num('slow', 1, 60000);
    return errs;
  }
  const intOr = (t) => (String(t).trim() ? Number(String(t).trim()) : undefined);

  function draftBody(v) {
    const body = {
      name: v.name.trim(), host: v.host.trim(), port: intOr(v.port), database: v.database,
      username: v.username, tls: { mode: v.tls_mode, channel_binding: v.channel_binding },
      options: {}, tags: tagList(v.tags),
      monitoring: { enabled: v.monitor, interval_s: intOr(v.interval), slow_ms: intOr(v.slow) },
    };
    if (v.description.trim()) body.description = v.description;
    const pw = F.password.input.value || held.password;
    if (pw) body.password = pw;
    if (v.ca.trim()) body.tls.ca_cert_pem = v.ca;
    if (v.cert.trim()) body.tls.client_cert_pem = v.cert;
    const key = F.key.input.value || held.key;
    if (key && key.trim()) body.tls.client_key_pem = key;
    if (v.app_name.trim()) body.options.application_name = v.app_name;
    if (v.timeout.trim()) body.options.connect_timeout_ms = intOr(v.timeout);
    return body;
  }

  // A test needs only what reaching the server takes: a bad name or tag must not block it.
  function testBody(v) {
    const { name, description, tags, monitoring, ...body } = draftBody(v);
    if (editing) body.id = id;
    return body;
  }

  function patchBody(v) {
    const b = {};
    const changed = (k) => v[k] !== initial[k];
    for (const k of ['name', 'host', 'database', 'username']) if (changed(k)) b[k] = k === 'host' || k === 'name' ? v[k].trim() : v[k];
    if (changed('description')) b.description = v.description.trim() ? v.description : null;
    if (changed('port')) b.port = intOr(v.port);
    const pw = F.password.input.value || held.password;
    if (pw) b.password = pw;
    const tls = {};
    if (changed('tls_mode')) tls.mode = v.tls_mode;
    if (changed('channel_binding')) tls.channel_binding = v.channel_binding;
    if (changed('ca')) tls.ca_cert_pem = v.ca.trim() ? v.ca : null;
    const key = F.key.input.value || held.key;
    if (changed('cert')) {
      tls.client_cert_pem = v.cert.trim() ? v.cert : null;
      if (!v.cert.trim() && !key) tls.client_key_pem = null;
    }
    if (key && key.trim()) tls.client_key_pem = key;
    if (Object.keys(tls).length) b.tls = tls;
    if (tagList(v.tags).join(',') !== tagList(initial.tags).join(',')) b.tags = tagList(v.tags);
    const options = {};
    if (changed('app_name')) options.application_name = v.app_name.trim() ? v.app_name : null;
    if (changed('timeout')) options.connect_timeout_ms = intOr(v.timeout) ?? 5000;
    if (Object.keys(options).length) b.options = options;
    const mon = {};
    if (changed('monitor')) mon.enabled = v.monitor;
    if (changed('interval')) mon.interval_s = intOr(v.interval);
    if (changed('slow')) mon.slow_ms = intOr(v.slow);
    if (Object.keys(mon).length) b.monitoring = mon;
    return b;
  }

  // Clears the secret inputs; what was typed is held (for Save) only when asked.
  function scrubSecrets(keep) {
    if (keep) {
      if (F.password.input.value) held.password = F.password.input.value;
      if (F.key.input.value) held.key = F.key.input.value;
    } else {
      held.password = null;
      held.key = null;
    }
    F.password.input.value = '';
    F.key.input.value = '';
    heldNote.hidden = !held.password;
  }

  function apiErrors(err) {
    if (!(err instanceof ApiError) || err.status !== 400 && err.status !== 409) return null;
    let path = err.field || (err.status === 409 ? 'name' : '');
    let prefix = '';
    const m = /^tags\[(\d+)\]$/.exec(path);
    if (m) { path = 'tags'; prefix = `Tag ${Number(m[1]) + 1}: `; }
    const key = API_FIELDS[path];
    const message = key ? prefix + fieldMessage(labels[key], err.message) : err.message;
    return [{ key: key || path, message }];
  }

  function setBusy(on) {
    busy = on;
    testButton.disabled = on;
    saveButton.disabled = on;
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  function showReport(report, lead) {
    replace(result, lead ? notice('error', lead) : null, waterfall(report));
    if (report.ok) { ctx.announce('Test passed.'); return; }
    const key = pointedField(report);
    if (key === 'password') held.password = null;
    heldNote.hidden = !held.password;
    if (key && F[key]) {
      F[key].setError(`The test failed here: ${report.hint || report.error_kind}`);
      F[key].input.focus();
    }
  }

  async function runTest() {
    if (busy) return;
    const v = read();
    const errs = localErrors(v, true);
    showErrors(summaryBox, F, errs);
    if (errs.length) return;
    const body = testBody(v);
    setBusy(true);
    replace(result, h('p', { class: 'form-testing' }, 'Testing the connection…'));
    try {
      const { data } = await post('/connections/test', body);
      scrubSecrets(true);
      showReport(data);
    } catch (e) {
      scrubSecrets(true);
      handleError(e, 'The test could not run');
    } finally {
      setBusy(false);
    }
  }

  function handleError(e, what) {
    const fieldErrs = apiErrors(e);
    if (fieldErrs) {
      replace(result);
      showErrors(summaryBox, F, fieldErrs);
      return;
    }
    if (e instanceof ApiError && e.status === 401) return;
    replace(result, notice('error', `${what}: ${describe(e)}`));
  }

  async function save() {
    if (busy) return;
    const v = read();
    replace(conflictBox);
    const errs = localErrors(v, false);
    showErrors(summaryBox, F, errs);
    if (errs.length) return;
    const wantTest = canTest && testFirst.input.checked;
    setBusy(true);
    replace(result, wantTest ? h('p', { class: 'form-testing' }, 'Testing, then saving…') : null);
    try {
      if (editing) {
        const body = patchBody(v);
        if (!Object.keys(body).length) {
          replace(result, notice('info', 'Nothing changed: there is nothing to save.'));
          return;
        }
        if (wantTest) {
          const { data } = await post('/connections/test', testBody(v));
          if (!data.ok) {
            scrubSecrets(true);
            showReport(data, 'The test failed, so nothing was saved.');
            return;
          }
        }
        const r = await patch(`/connections/${id}`, body, version);
        scrubSecrets(false);
        ctx.announce(`Saved ${r.data.name}.`);
        ctx.navigate(`/connections/${r.data.id}`);
      } else {
        const r = await post('/connections', draftBody(v), { query: wantTest ? { test_first: 'true' } : undefined });
        scrubSecrets(false);
        ctx.announce(`Saved ${r.data.name}.`);
        ctx.navigate(`/connections/${r.data.id}`);
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 422 && e.body && e.body.report) {
        scrubSecrets(true);
        showReport(e.body.report, 'The test failed, so nothing was saved.');
      } else if (e instanceof ApiError && e.status === 412) {
        scrubSecrets(true);
        replace(result);
        showConflict();
      } else {
        scrubSecrets(true);
        handleError(e, 'Not saved');
      }
    } finally {
      setBusy(false);
    }
  }

  function showConflict() {
    const reload = h('button', { type: 'button', class: 'button button--secondary', on: { click: () => reloadKeeping(reload) } }, 'Reload');
    const box = notice('warning',
      h('p', null, h('strong', null, 'This connection was changed by someone else meanwhile.'),
        ' Nothing was saved. Reload to get their version: the values you typed are kept.'),
      h('p', null, reload));
    box.setAttribute('role', 'alert');
    replace(conflictBox, box);
    reload.focus();
  }

  async function reloadKeeping(button) {
    button.disabled = true;
    try {
      const r = await get(`/connections/${id}`);
      const fresh = snapshotOf(r.data);
      const typed = read();
      const merged = {};
      for (const k of Object.keys(fresh)) merged[k] = typed[k] !== initial[k] ? typed[k] : fresh[k];
      conn = r.data;
      initial = fresh;
      version = r.etag ?? r.data.version;
      fill(merged);
      setModeOptions(initial.tls_mode);
      replace(conflictBox, notice('info', 'Reloaded the current version; your changes are kept. Review them and save again.'));
      ctx.announce('Reloaded the current version; your changes are kept.');
      saveButton.focus();
    } catch (e) {
      button.disabled = false;
      replace(conflictBox, notice('error', `Could not reload: ${describe(e)}`));
    }
  }

  return () => {
    held.password = null;
    held.key = null;
    F.password.input.value = '';
    F.key.input.value = '';
  };
}
