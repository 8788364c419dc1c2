// Reads a pasted postgres:// or postgresql:// URL in the browser, with the rules of the core's
// parser (datahub-core/src/dsn.rs): strict percent-decoding, [IPv6] hosts, the same accepted
// keys, no dbname → the user name. It never repeats an unknown key (it may be a fragment of a
// password), and it answers the URL without its password so the URL field can drop it.

const KEYS = new Set(['host', 'port', 'dbname', 'user', 'password', 'sslmode', 'sslrootcert',
  'sslcert', 'sslkey', 'channel_binding', 'connect_timeout', 'application_name']);
const TLS_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
const BINDINGS = ['disable', 'prefer', 'require'];

class UrlError extends Error {
  constructor(message, key = null) { super(message); this.key = key; }
}

function decode(s, what) {
  const bytes = [];
  for (let i = 0; i < s.length; i += 1) {
    if (s[i] === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new UrlError(`The ${what} has a '%' not followed by two hex digits.`, what);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of new TextEncoder().encode(s[i])) bytes.push(b);
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(bytes));
  } catch {
    throw new UrlError(`The ${what} is not valid UTF-8 once decoded.`, what);
  }
}

/** Whether the text looks like a URL the parser takes (a scheme before any '='). */
export function looksLikeUrl(text) {
  const t = String(text || '').trim();
  const sep = t.indexOf('://');
  const eq = t.indexOf('=');
  return sep > 0 && (eq < 0 || eq > sep);
}

/**
 * Parses a URL. Answers {ok: true, values, stripped, hadPassword, certKeys} or
 * {ok: false, message, key}. `values` holds the form's fields (strings): user, password, host,
 * port, database, sslmode, channel_binding, application_name, connect_timeout_ms; absent keys
 * are absent. `stripped` is the URL without its password.
 */
export function parsePgUrl(input) {
  try {
    return parse(String(input || '').trim());
  } catch (e) {
    if (e instanceof UrlError) return { ok: false, message: e.message, key: e.key };
    throw e;
  }
}

function parse(text) {
  if (!text) throw new UrlError('Paste a postgresql:// URL.');
  const sep = text.indexOf('://');
  if (sep < 0) throw new UrlError('A connection URL starts with postgresql:// or postgres://.');
  const scheme = text.slice(0, sep);
  if (!/^postgres(ql)?$/i.test(scheme)) {
    throw new UrlError(/^jdbc:/i.test(scheme)
      ? 'JDBC URLs are not supported: remove the jdbc: prefix.'
      : 'Only postgres:// and postgresql:// URLs are supported.');
  }
  const rest = text.slice(sep + 3);
  if (/[\s\u0000-\u001f\u007f]/.test(rest)) {
    throw new UrlError('A URL must not contain spaces or control characters: percent-encode them.');
  }
  const params = [];
  const authEnd = firstOf(rest, '/?');
  const at = rest.slice(0, authEnd).lastIndexOf('@');
  let userinfo = null;
  let after = rest;
  if (at >= 0) {
    userinfo = rest.slice(0, at);
    after = rest.slice(at + 1);
  }
  let strippedUserinfo = userinfo;
  if (userinfo !== null) {
    const colon = userinfo.indexOf(':');
    const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    params.push(['user', decode(user, 'user name')]);
    if (colon >= 0) {
      params.push(['password', decode(userinfo.slice(colon + 1), 'password')]);
      strippedUserinfo = user;
    }
  }
  const hostEnd = firstOf(after, '/?');
  netloc(after.slice(0, hostEnd), params);
  let path = after.slice(hostEnd);
  let query = null;
  const q = path.indexOf('?');
  if (q >= 0) { query = path.slice(q + 1); path = path.slice(0, q); }
  if (path.startsWith('/')) {
    const db = path.slice(1);
    if (db.includes('@')) {
      throw new UrlError("Unexpected '@' after the host: percent-encode special characters in the password ('/' as %2F, '@' as %40).");
    }
    if (db.includes('/')) throw new UrlError("The path must be a single database name: percent-encode '/' as %2F.");
    params.push(['dbname', decode(db, 'database name')]);
  }
  const keptPairs = [];
  let queryPassword = false;
  if (query !== null) {
    query.split('&').forEach((pair, i) => {
      if (!pair) return;
      const eq = pair.indexOf('=');
      if (eq < 0) throw new UrlError(`Query parameter #${i + 1} has no '='.`);
      const key = decode(pair.slice(0, eq), 'query');
      params.push([key, decode(pair.slice(eq + 1), 'query')]);
      if (key === 'password') queryPassword = true;
      else keptPairs.push(pair);
    });
  }
  const built = build(params);
  const hadPassword = built.values.password !== undefined || (userinfo !== null && strippedUserinfo !== userinfo) || queryPassword;
  let stripped = `${scheme}://`;
  if (strippedUserinfo !== null) stripped += `${strippedUserinfo}@`;
  stripped += after.slice(0, hostEnd) + path;
  if (query !== null) {
    const kept = queryPassword ? keptPairs.join('&') : query;
    if (kept) stripped += `?${kept}`;
  }
  return { ok: true, values: built.values, certKeys: built.certKeys, stripped, hadPassword };
}

function firstOf(s, chars) {
  for (let i = 0; i < s.length; i += 1) if (chars.includes(s[i])) return i;
  return s.length;
}

function netloc(text, params) {
  if (text.includes(',')) throw new UrlError('Host lists are not supported: give one host.', 'host');
  let host;
  let port = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new UrlError("The host has an opening '[' without a closing ']'.", 'host');
    host = decode(text.slice(1, close), 'host');
    const tail = text.slice(close + 1);
    if (tail) {
      if (!tail.startsWith(':')) throw new UrlError("The host has unexpected characters after ']'.", 'host');
      port = tail.slice(1);
    }
  } else {
    const colon = text.indexOf(':');
    host = decode(colon >= 0 ? text.slice(0, colon) : text, 'host');
    if (colon >= 0) {
      port = text.slice(colon + 1);
      if (port.includes(':')) throw new UrlError('An IPv6 address in a URL must be in brackets, e.g. [::1].', 'host');
    }
  }
  if (host) params.push(['host', host]);
  if (port !== null) {
    if (!port) throw new UrlError("The port must not be empty after ':'.", 'port');
    params.push(['port', decode(port, 'port')]);
  }
}

function build(params) {
  const values = {};
  const certKeys = [];
  const seen = new Set();
  params.forEach(([key, value], i) => {
    if (!KEYS.has(key)) throw new UrlError(`A parameter (#${i + 1}) is not supported. Accepted keys: ${[...KEYS].join(', ')}.`);
    if (seen.has(key)) throw new UrlError(`The key ${key} is given more than once.`, key);
    seen.add(key);
    if (value === '') return;
    switch (key) {
      case 'host':
        if (value.startsWith('/') || value.startsWith('@')) throw new UrlError('Unix-socket paths are not supported: give a host name or IP address.', 'host');
        values.host = value;
        break;
      case 'port':
        if (!/^\d+$/.test(value.trim())) throw new UrlError('The port must be a number between 1 and 65535.', 'port');
        values.port = String(Number(value.trim()));
        break;
      case 'dbname': values.database = value; break;
      case 'user': values.username = value; break;
      case 'password': values.password = value; break;
      case 'sslmode':
        if (!TLS_MODES.includes(value)) throw new UrlError(`sslmode must be one of: ${TLS_MODES.join(', ')}.`, 'sslmode');
        values.sslmode = value;
        break;
      case 'channel_binding':
        if (!BINDINGS.includes(value)) throw new UrlError(`channel_binding must be one of: ${BINDINGS.join(', ')}.`, 'channel_binding');
        values.channel_binding = value;
        break;
      case 'connect_timeout': {
        const secs = Number(value.trim());
        if (!Number.isInteger(secs) || secs < 1 || secs > 5) {
          throw new UrlError('connect_timeout must be between 1 and 5 seconds.', 'connect_timeout');
        }
        values.connect_timeout_ms = String(secs * 1000);
        break;
      }
      case 'application_name': values.application_name = value; break;
      default:
        // sslrootcert, sslcert, sslkey name files on the machine the URL came from: the
        // browser cannot read them, so the form asks for them.
        if (value === 'system' && key === 'sslrootcert') values.sslmode = values.sslmode || 'verify-full';
        else certKeys.push(key);
    }
  });
  if (!values.host) throw new UrlError('The URL has no host (a local unix socket is not supported).', 'host');
  if (values.database === undefined && values.username !== undefined) values.database = values.username;
  if (certKeys.includes('sslrootcert') && values.sslmode === 'require') values.sslmode = 'verify-ca';
  return { values, certKeys };
}
