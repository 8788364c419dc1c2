// A pasted postgres(ql):// URL read with the core's rules (datahub-core/src/dsn.rs); never echoes
// an unknown key (it may be part of a password) and answers the URL without its password.

const KEYS = ['host', 'port', 'dbname', 'user', 'password', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey',
  'channel_binding', 'connect_timeout', 'application_name'];
const ENUMS = {
  sslmode: ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'],
  channel_binding: ['disable', 'prefer', 'require'],
};
const FIELDS = { dbname: 'database', user: 'username', password: 'password', application_name: 'application_name', sslmode: 'sslmode', channel_binding: 'channel_binding' };

const fail = (message) => { throw Object.assign(new Error(message), { url: true }); };

function decode(s, what) {
  if (/%(?![0-9a-fA-F]{2})/.test(s)) fail(`The ${what} has a '%' not followed by two hex digits.`);
  try {
    return decodeURIComponent(s);
  } catch {
    return fail(`The ${what} is not valid UTF-8 once decoded.`);
  }
}

/** Whether the text looks like a URL (a scheme before any '='). */
export function looksLikeUrl(text) {
  const t = String(text).trim();
  const eq = t.indexOf('=');
  return t.indexOf('://') > 0 && (eq < 0 || eq > t.indexOf('://'));
}

/**
 * {ok: true, values (strings by form field), stripped (no password), hadPassword, certKeys (file
 * keys a browser cannot read)} or {ok: false, message}.
 */
export function parsePgUrl(input) {
  try {
    return parse(String(input).trim());
  } catch (e) {
    if (e.url) return { ok: false, message: e.message };
    throw e;
  }
}

function parse(text) {
  const sep = text.indexOf('://');
  if (sep < 0) fail('A connection URL starts with postgresql:// or postgres://.');
  const scheme = text.slice(0, sep);
  if (!/^postgres(ql)?$/i.test(scheme)) fail(/^jdbc:/i.test(scheme) ? 'JDBC URLs are not supported: remove the jdbc: prefix.' : 'Only postgres:// and postgresql:// URLs are supported.');
  const rest = text.slice(sep + 3);
  if (/[\s\x00-\x1f\x7f]/.test(rest)) fail('A URL must not contain spaces or control characters: percent-encode them.');
  const params = [];
  // The user info ends at the last '@' before the path or query.
  const authEnd = rest.search(/[/?]|$/);
  const at = rest.lastIndexOf('@', authEnd - 1);
  let user = null;
  let hadPassword = false;
  if (at >= 0) {
    const info = rest.slice(0, at);
    const colon = info.indexOf(':');
    user = colon < 0 ? info : info.slice(0, colon);
    params.push(['user', decode(user, 'user name')]);
    if (colon >= 0) { params.push(['password', decode(info.slice(colon + 1), 'password')]); hadPassword = true; }
  }
  const after = rest.slice(at + 1);
  const hostEnd = after.search(/[/?]|$/);
  const netloc = after.slice(0, hostEnd);
  if (netloc.includes(',')) fail('Host lists are not supported: give one host.');
  const m = /^\[([^\]]*)\](.*)$/.exec(netloc);
  if (netloc.startsWith('[') && !m) fail("The host has an opening '[' without a closing ']'.");
  if (m && m[2] && m[2][0] !== ':') fail("The host has unexpected characters after ']'.");
  const [host, port] = m ? [m[1], m[2] ? m[2].slice(1) : null] : [netloc.split(':')[0], netloc.includes(':') ? netloc.slice(netloc.indexOf(':') + 1) : null];
  if (!m && port !== null && port.includes(':')) fail('An IPv6 address in a URL must be in brackets, e.g. [::1].');
  if (host) params.push(['host', decode(host, 'host')]);
  if (port === '') fail("The port must not be empty after ':'.");
  if (port !== null) params.push(['port', decode(port, 'port')]);
  const [path, query = null] = after.slice(hostEnd).split(/\?(.*)/s);
  if (path) {
    const db = path.slice(1);
    if (db.includes('@')) fail("Unexpected '@' after the host: percent-encode special characters in the password ('/' as %2F, '@' as %40).");
    if (db.includes('/')) fail("The path must be a single database name: percent-encode '/' as %2F.");
    params.push(['dbname', decode(db, 'database name')]);
  }
  const kept = [];
  for (const [i, pair] of (query ? query.split('&') : []).entries()) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    if (eq < 0) fail(`Query parameter #${i + 1} has no '='.`);
    const key = decode(pair.slice(0, eq), 'query');
    params.push([key, decode(pair.slice(eq + 1), 'query')]);
    if (key === 'password') hadPassword = true; else kept.push(pair);
  }
  const stripped = `${scheme}://${user !== null ? `${user}@` : ''}${netloc}${path}${kept.length ? `?${kept.join('&')}` : ''}`;
  return { ok: true, ...build(params), stripped, hadPassword };
}

function build(params) {
  const values = {};
  const certKeys = [];
  const seen = new Set();
  for (const [key, value] of params) {
    if (!KEYS.includes(key)) fail(`A parameter is not supported. Accepted keys: ${KEYS.join(', ')}.`);
    if (seen.has(key)) fail(`The key ${key} is given more than once.`);
    seen.add(key);
    if (value === '') continue;
    if (ENUMS[key] && !ENUMS[key].includes(value)) fail(`${key} must be one of: ${ENUMS[key].join(', ')}.`);
    if (FIELDS[key]) values[FIELDS[key]] = value;
    else if (key === 'host') {
      if (/^[/@]/.test(value)) fail('Unix-socket paths are not supported: give a host name or IP address.');
      values.host = value;
    } else if (key === 'port') {
      if (!/^\d+$/.test(value.trim())) fail('The port must be a number between 1 and 65535.');
      values.port = String(Number(value.trim()));
    } else if (key === 'connect_timeout') {
      const s = Number(value.trim());
      if (!(Number.isInteger(s) && s >= 1 && s <= 5)) fail('connect_timeout must be between 1 and 5 seconds.');
      values.connect_timeout_ms = String(s * 1000);
    } else if (key === 'sslrootcert' && value === 'system') values.sslmode = values.sslmode || 'verify-full';
    else certKeys.push(key);
  }
  if (!values.host) fail('The URL has no host (a local unix socket is not supported).');
  if (values.database === undefined && values.username !== undefined) values.database = values.username;
  // libpq verifies the chain in `require` mode when a root certificate is given.
  if (certKeys.includes('sslrootcert') && values.sslmode === 'require') values.sslmode = 'verify-ca';
  return { values, certKeys };
}
