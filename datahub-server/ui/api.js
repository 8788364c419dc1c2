// The one fetch wrapper: JSON in and out, the API's error shape, If-Match/ETag, 401 → sign-in.

const BASE = '/api/v1';

/** An error answer of the API: {"error": {"code", "message", "field"?, "request_id"?}}. */
export class ApiError extends Error {
  constructor(status, { code = 'error', message, field = null, requestId = null, retryAfter = null, body = null } = {}) {
    super(message || `the server answered ${status}`);
    Object.assign(this, { name: 'ApiError', status, code, field, requestId, retryAfter, body });
  }
}

let unauthenticated = null;

/** Sets what happens when a call finds the session gone (app.js: go to sign-in). */
export function onUnauthenticated(fn) {
  unauthenticated = fn;
}


function parseEtag(value) {
  const m = /^(?:W\/)?"?(\d+)"?$/.exec((value || '').trim());
  return m ? Number(m[1]) : null;
}


export async function api(method, path, { query, body, ifMatch, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (ifMatch != null) {
    const text = String(ifMatch);
    headers['If-Match'] = text.startsWith('"') ? text : `"${text}"`;
  }
  let response;
  try {
    const qs = new URLSearchParams(Object.entries(query || {}).filter(([, v]) => v != null && v !== ''));
    response = await fetch(`${BASE}${path}?${qs}`.replace(/\?$/, ''), init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, { code: 'network', message: 'the server could not be reached: check your network and try again' });
  }
  const etag = parseEtag(response.headers.get('ETag'));
  let data = null;
  try { data = JSON.parse(await response.text()); } catch { /* 204, or not JSON */ }
  if (response.ok) return { status: response.status, data, etag };
  const { code, message, field, request_id: requestId } = (data && data.error) || {};
  const error = new ApiError(response.status, {
    code,
    message,
    field,
    requestId: requestId || response.headers.get('x-request-id'),
    retryAfter: Math.ceil(response.headers.get('Retry-After')) || null, // seconds
    body: data,
  });
  if (response.status === 401 && !(method === 'POST' && path === '/auth/login') && unauthenticated) {
    unauthenticated(error);
  }
  throw error;
}

export const isStatus = (e, ...statuses) => e instanceof ApiError && statuses.includes(e.status);

export const get = (path, query, opts = {}) => api('GET', path, { ...opts, query });
export const post = (path, body, opts = {}) => api('POST', path, { ...opts, body });
export const patch = (path, body, ifMatch) => api('PATCH', path, { body, ifMatch });
export const put = (path, body, ifMatch) => api('PUT', path, { body, ifMatch });
export const del = (path, ifMatch) => api('DELETE', path, { ifMatch });

/** A one-line human message for any error a call may throw. */
export function describe(error) {
  if (!(error instanceof ApiError)) return 'Something went wrong in the page. Reload it and try again.';
  switch (error.status) {
    case 0: return 'The server could not be reached. Check your network and try again.';
    case 403: return `You do not have permission to do that (${error.message}).`;
    case 404: return 'Not found: it does not exist, or you may not see it.';
    case 412: return 'It changed since you loaded it. Reload to see the current version.';
    case 429: return error.retryAfter != null
      ? `Too many requests. Try again in ${error.retryAfter} s.`
      : 'Too many requests. Wait a moment and try again.';
    default: return error.message;
  }
}
