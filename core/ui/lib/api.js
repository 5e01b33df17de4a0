// HTTP API access: the ACL token header, errors carrying status and body, blocking-query watches
// with backoff, and the agent-reachability signal behind the "unreachable" banner.

import { config } from './config.js';

/** localStorage key Consul's own UI uses for the token (JSON with AccessorID and SecretID), so a
 * login carries over between the two consoles on one origin. */
export const TOKEN_KEY = 'consul:token';

/** The stored token ({AccessorID, SecretID}) or null. */
export function storedToken() {
  try {
    const t = JSON.parse(localStorage.getItem(TOKEN_KEY) || 'null');
    return t && t.SecretID ? t : null;
  } catch {
    return null;
  }
}

/** Stores the token the way Consul's UI does. */
export function storeToken(accessorID, secretID) {
  localStorage.setItem(TOKEN_KEY, JSON.stringify({ AccessorID: accessorID, SecretID: secretID }));
}

/** Forgets the stored token. */
export function clearToken() {
  localStorage.removeItem(TOKEN_KEY);
}

/** An HTTP error response: keeps the status and the body text the agent sent. */
export class ApiError extends Error {
  constructor(status, statusText, body) {
    super(`${status} ${statusText}${body ? `: ${body.trim()}` : ''}`);
    this.status = status;
    this.statusText = statusText;
    this.body = (body || '').trim();
  }
}

/** The agent could not be reached at all (connection refused, reset, DNS…). */
export class NetworkError extends Error {}

/** Fires `change` events when the agent becomes unreachable or reachable again. */
export const reachability = new EventTarget();
let reachable = true;

function setReachable(ok) {
  if (ok === reachable) return;
  reachable = ok;
  reachability.dispatchEvent(new Event('change'));
}

/** Whether the last request reached the agent. */
export function isReachable() {
  return reachable;
}

/** The datacenter of the current page, sent as ?dc= when it is not the agent's own. */
let currentDc = config.LocalDatacenter;
export function setDatacenter(dc) {
  currentDc = dc;
}

/** Builds an API path from a prefix and path segments, each encoded (KV keys hold slashes and
 * dots: the slashes between segments are kept). */
export function apiPath(prefix, key) {
  return prefix + String(key).split('/').map(encodeURIComponent).join('/');
}

/**
 * Sends one request. `params` values: `true` sends a bare flag (`?keys`), null/undefined are
 * skipped. Resolves {data, index, hasIndex, status}; rejects with ApiError (non-2xx, unless
 * `allow404`) or NetworkError.
 */
export async function request(path, { method = 'GET', params, body, signal, token, allow404 } = {}) {
  const url = new URL(path, location.origin);
  const query = [];
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === false) continue;
    query.push(v === true ? encodeURIComponent(k) : `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  if (currentDc && currentDc !== config.LocalDatacenter && !('dc' in (params || {}))) {
    query.push(`dc=${encodeURIComponent(currentDc)}`);
  }
  url.search = query.join('&');
  const headers = {};
  const secret = token !== undefined ? token : storedToken()?.SecretID;
  if (secret) headers['X-Consul-Token'] = secret;
  let resp;
  try {
    resp = await fetch(url, { method, body, signal, headers });
  } catch (e) {
    if (signal && signal.aborted) throw e;
    setReachable(false);
    throw new NetworkError(`The agent is unreachable (${e.message})`);
  }
  setReachable(true);
  const text = await resp.text();
  const hasIndex = resp.headers.has('X-Consul-Index');
  const index = Number(resp.headers.get('X-Consul-Index')) || 0;
  if (resp.status === 404 && allow404) return { data: null, index, hasIndex, status: 404 };
  if (!resp.ok) throw new ApiError(resp.status, resp.statusText, text);
  let data = text;
  if ((resp.headers.get('Content-Type') || '').includes('json') && text !== '') {
    data = JSON.parse(text);
  }
  return { data, index, hasIndex, status: resp.status };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/** Retry delay after `failures` consecutive errors: exponential, capped, with jitter so many
 * consoles don't retry in lockstep. */
function backoff(failures) {
  const base = Math.min(500 * 2 ** (failures - 1), 5000);
  return base / 2 + Math.random() * (base / 2);
}

/**
 * Keeps `path` up to date with blocking queries until `signal` aborts: calls onData(data, resp)
 * on every change and onError(error) on failures (4xx stops the watch: retrying a bad filter or a
 * denied request gives the same answer). Endpoints without X-Consul-Index are re-read after
 * `refreshMs`.
 */
export function watch(path, { params = {}, signal, onData, onError, allow404 = false, refreshMs = 10000, wait = '60s' }) {
  (async () => {
    let index = 0;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const p = { ...params };
        if (index > 0) {
          p.index = index;
          p.wait = wait;
        }
        const started = Date.now();
        const resp = await request(path, { params: p, signal, allow404 });
        if (signal.aborted) return;
        failures = 0;
        if (!resp.hasIndex) {
          onData(resp.data, resp);
          await sleep(refreshMs, signal);
          continue;
        }
        const changed = index === 0 || resp.index !== index;
        // An index that goes backwards (a restored snapshot, a restarted agent) starts over.
        index = resp.index < index ? 0 : Math.max(resp.index, 1);
        if (changed) onData(resp.data, resp);
        // An unchanged index returned at once means the endpoint does not block: re-read later
        // instead of spinning.
        else if (Date.now() - started < 1000) await sleep(refreshMs, signal);
      } catch (e) {
        if (signal.aborted) return;
        if (onError) onError(e);
        if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) return;
        failures += 1;
        index = 0;
        await sleep(backoff(failures), signal);
      }
    }
  })();
}
