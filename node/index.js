// consul-rs for Node.js: a Promise-based Consul client with async-iterable watches, discovery,
// locks, leader election, self-registration and an embeddable Consul-compatible node, over the
// consul-rs Rust core (native.cjs, built from bindings/node).
//
// Event-loop rules (see README.md): open watches, leader elections and embedded agents keep the
// process alive, as a listening server does, until closed or unref()'d; an awaited next() or
// waitForLeadership() holds it until it settles even then, as a pending fetch does. Clients,
// discoveries, locks and registrations do not: a process whose watches, elections and agents are
// closed exits by itself. At exit every live handle is stopped synchronously (registrations deregistered,
// locks released, agents shut down); SIGINT and SIGTERM deregister live registrations first.
// Every native callback runs on the JS thread (native threadsafe functions).
'use strict';

const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const native = require('./native.cjs');

const asyncDispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose');
const dispose = Symbol.dispose || Symbol.for('nodejs.dispose');

// ---- errors ---------------------------------------------------------------------------------

/** The SDK's error codes (`err.code` of every ConsulError). */
const ErrorCodes = Object.freeze({
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  NOT_FOUND: 'NOT_FOUND',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  CONFLICT: 'CONFLICT',
  TIMEOUT: 'TIMEOUT',
  CONNECTION: 'CONNECTION',
  NO_LEADER: 'NO_LEADER',
  UNAVAILABLE: 'UNAVAILABLE',
  CANCELLED: 'CANCELLED',
  SHUTDOWN: 'SHUTDOWN',
  FORKED: 'FORKED',
  WOULD_DEADLOCK: 'WOULD_DEADLOCK',
  INTERNAL: 'INTERNAL',
  TOO_LARGE: 'TOO_LARGE',
});

/** Every failure of a consul-rs call: `code` is one of ErrorCodes, `httpStatus` the agent's. */
class ConsulError extends Error {
  constructor(message, code = 'INTERNAL', httpStatus = undefined, options = undefined) {
    super(message, options);
    this.name = 'ConsulError';
    this.code = code;
    this.httpStatus = httpStatus === null ? undefined : httpStatus;
  }
}

/** A native failure (plain `{code, message, httpStatus}` or a thrown Error with `.code`). */
function fromNative(e) {
  if (e instanceof ConsulError || e instanceof TypeError) return e;
  if (e && typeof e === 'object' && typeof e.code === 'string' && e.code in ErrorCodes) {
    return new ConsulError(String(e.message), e.code, e.httpStatus);
  }
  if (e && e.code === 'InvalidArg') {
    const t = new TypeError(String(e.message));
    t.code = 'ERR_INVALID_ARG_TYPE';
    return t;
  }
  return new ConsulError(String((e && e.message) || e), 'INTERNAL', undefined, { cause: e });
}

function invalid(name, why) {
  return new ConsulError(`${name}: ${why}`, 'INVALID_ARGUMENT');
}

// ---- argument checks (wrong types throw TypeError naming the argument) -----------------------

function describe(v) {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'function') return `function ${v.name || '(anonymous)'}`;
  if (typeof v === 'object') return v.constructor && v.constructor.name ? `an instance of ${v.constructor.name}` : 'an object';
  const shown = typeof v === 'string' ? JSON.stringify(v.length > 25 ? `${v.slice(0, 25)}...` : v) : String(v);
  return `type ${typeof v} (${shown})`;
}

function typeError(name, expected, value) {
  const e = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(value)}`);
  e.code = 'ERR_INVALID_ARG_TYPE';
  return e;
}

function str(v, name) {
  if (typeof v !== 'string') throw typeError(name, 'of type string', v);
  return v;
}
function optStr(v, name) {
  return v === undefined || v === null ? undefined : str(v, name);
}
function optBool(v, name) {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw typeError(name, 'of type boolean', v);
  return v;
}
function optNum(v, name) {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number') throw typeError(name, 'of type number', v);
  return v;
}
function opts(v, name = 'options') {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw typeError(name, 'an object', v);
  return v;
}
function strList(v, name) {
  if (v === undefined || v === null) return [];
  if (typeof v === 'string' || !v || typeof v[Symbol.iterator] !== 'function') {
    throw typeError(name, 'an array of strings', v);
  }
  return Array.from(v, (x) => str(x, name));
}
function strMap(v, name) {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw typeError(name, 'an object of strings', v);
  const out = {};
  for (const [k, x] of v instanceof Map ? v : Object.entries(v)) out[k] = str(x, `${name}.${k}`);
  return out;
}
function bytes(v, name) {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw typeError(name, 'a string, Buffer or Uint8Array', v);
}
function optBytes(v, name) {
  return v === undefined || v === null ? Buffer.alloc(0) : bytes(v, name);
}
function fn(v, name) {
  if (typeof v !== 'function') throw typeError(name, 'a function', v);
  return v;
}
function optSignal(v, name) {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || typeof v.aborted !== 'boolean' || typeof v.addEventListener !== 'function') {
    throw typeError(name, 'an AbortSignal', v);
  }
  return v;
}

/** Milliseconds from a number (ms) or a Go duration string (`"10s"`, `"1m30s"`, `"500ms"`): parsed
 * and checked by the native SDK, the one implementation Python and C use too. */
function duration(v, name) {
  if (typeof v === 'number') return sync(() => native.checkMillis(v, name));
  if (typeof v !== 'string') throw typeError(name, 'a number of milliseconds or a duration string', v);
  return sync(() => native.parseDuration(v, name));
}
function optDuration(v, name) {
  return v === undefined || v === null ? undefined : duration(v, name);
}

function consistency(o) {
  const consistent = optBool(o.consistent, 'consistent');
  const stale = optBool(o.stale, 'stale');
  if (consistent && stale) throw invalid('consistent/stale', 'only one may be given');
  return consistent ? 'consistent' : stale ? 'stale' : '';
}

/** Runs `f`: TypeErrors throw synchronously, every other failure becomes a rejection. */
function settle(f) {
  try {
    return Promise.resolve(f());
  } catch (e) {
    if (e instanceof TypeError) throw e;
    return Promise.reject(fromNative(e));
  }
}

/** Calls a native method with a trailing `(err, value)` callback, as a Promise. */
function call(target, method, ...args) {
  return new Promise((resolve, reject) => {
    try {
      target[method](...args, (err, value) => (err ? reject(fromNative(err)) : resolve(value)));
    } catch (e) {
      reject(fromNative(e));
    }
  });
}

/** A native synchronous call whose errors become ConsulErrors. */
function sync(f) {
  try {
    return f();
  } catch (e) {
    throw fromNative(e);
  }
}

// ---- process lifetime ------------------------------------------------------------------------

/** Everything with background work, stopped synchronously at exit (strong references: like a
 * server, a handle dropped without close() keeps running until the process ends). */
const live = new Set();
let exitHooked = false;

function track(obj) {
  live.add(obj);
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', closeAllSync);
  }
  if (obj instanceof Registration) updateSignalHandlers();
}

function untrack(obj) {
  live.delete(obj);
  if (obj instanceof Registration) updateSignalHandlers();
}

// Registrations first (they may live on an embedded agent), agents last.
const EXIT_ORDER = ['Registration', 'LeaderElection', 'Lock', 'Watch', 'Discovery', 'Agent'];

function closeAllSync() {
  const items = [...live].sort((a, b) => EXIT_ORDER.indexOf(a.constructor.name) - EXIT_ORDER.indexOf(b.constructor.name));
  for (const obj of items) {
    try {
      obj._closeSync();
    } catch {
      // Nothing may stop the process from exiting.
    }
  }
}

const SIGNALS = ['SIGINT', 'SIGTERM'];
let signalsHooked = false;

function onSignal(signal) {
  for (const obj of [...live]) {
    if (obj instanceof Registration) {
      try {
        obj._closeSync();
      } catch {
        // keep going: the other registrations still deregister
      }
    }
  }
  updateSignalHandlers();
  // Only we were listening: do what the signal would have done without us.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function updateSignalHandlers() {
  const want = [...live].some((o) => o instanceof Registration);
  if (want && !signalsHooked) {
    for (const s of SIGNALS) process.on(s, onSignal);
    signalsHooked = true;
  } else if (!want && signalsHooked) {
    for (const s of SIGNALS) process.removeListener(s, onSignal);
    signalsHooked = false;
  }
}

/** A ref-able handle that keeps the event loop alive while the owner is open, unless
 * unref()'d; a hold() keeps it alive anyway until released, so an awaited answer from an
 * unref()'d handle (a watch's next(), an election's waitForLeadership()) is not cut short by an
 * exit, as a pending fetch is not. */
class KeepAlive {
  constructor() {
    this._timer = setInterval(() => {}, 2 ** 31 - 1);
    this._wanted = true;
    this._holds = 0;
  }
  _apply() {
    if (!this._timer) return;
    if (this._wanted || this._holds > 0) this._timer.ref();
    else this._timer.unref();
  }
  ref() {
    this._wanted = true;
    this._apply();
  }
  unref() {
    this._wanted = false;
    this._apply();
  }
  /** Keeps the loop alive until the returned function is called (once). */
  hold() {
    this._holds += 1;
    this._apply();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this._holds -= 1;
      this._apply();
    };
  }
  get hasRef() {
    return Boolean(this._timer && this._timer.hasRef());
  }
  stop() {
    if (this._timer) clearInterval(this._timer);
    this._timer = null;
  }
}

// ---- checks ----------------------------------------------------------------------------------

/** A check attached to a registration: Check.http / tcp / grpc / ttl. */
class Check {
  constructor(kind, target, o) {
    this.kind = kind;
    this.target = target;
    this.ttlMs = o.ttlMs;
    this.intervalMs = o.intervalMs;
    this.timeoutMs = o.timeoutMs;
    this.deregisterCriticalAfterMs = o.deregisterCriticalAfterMs;
    Object.freeze(this);
  }

  static _timing(o, withInterval) {
    o = opts(o);
    return {
      intervalMs: withInterval ? duration(o.interval === undefined ? 10000 : o.interval, 'interval') : undefined,
      timeoutMs: optDuration(o.timeout, 'timeout'),
      deregisterCriticalAfterMs: optDuration(o.deregisterCriticalAfter, 'deregisterCriticalAfter'),
    };
  }

  static _target(v, name) {
    return str(v, name);
  }

  /** The SDK's rules and messages, shared with Python and C (empty targets, zero TTLs, ...). */
  _validated() {
    sync(() => native.validateCheck(this._native()));
    return this;
  }

  /** An HTTP GET check: 2xx passing, 429 warning, anything else critical. */
  static http(url, o) {
    return new Check('http', Check._target(url, 'url'), Check._timing(o, true))._validated();
  }

  /** A TCP connect check of `host:port`. */
  static tcp(address, o) {
    return new Check('tcp', Check._target(address, 'address'), Check._timing(o, true))._validated();
  }

  /** A gRPC health check of `host:port[/service]`. */
  static grpc(target, o) {
    return new Check('grpc', Check._target(target, 'target'), Check._timing(o, true))._validated();
  }

  /** A TTL check, kept passing by `register()` until the registration is closed. */
  static ttl(ttl, o) {
    const ms = duration(ttl, 'ttl');
    return new Check('ttl', undefined, { ...Check._timing(o, false), ttlMs: ms })._validated();
  }

  _native() {
    return {
      kind: this.kind,
      target: this.target,
      ttlMs: this.ttlMs,
      intervalMs: this.intervalMs,
      timeoutMs: this.timeoutMs,
      deregisterCriticalAfterMs: this.deregisterCriticalAfterMs,
    };
  }
}

function registration(o) {
  o = opts(o, 'registration');
  const name = str(o.name, 'name');
  let checks = [];
  if (o.check !== undefined && o.check !== null) checks.push(o.check);
  if (o.checks !== undefined && o.checks !== null) {
    if (!Array.isArray(o.checks)) throw typeError('checks', 'an array of Check', o.checks);
    checks = checks.concat(o.checks);
  }
  for (const c of checks) if (!(c instanceof Check)) throw typeError('check', 'a Check (Check.http/tcp/grpc/ttl)', c);
  const port = optNum(o.port, 'port');
  const reg = {
    name,
    id: optStr(o.id, 'id'),
    address: optStr(o.address, 'address'),
    port,
    tags: strList(o.tags, 'tags'),
    meta: strMap(o.meta, 'meta'),
    checks: checks.map((c) => c._native()),
  };
  // Values after types, so a call with both kinds of fault always throws the TypeError.
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    throw invalid('port', `${port} is out of range 0-65535`);
  }
  return reg;
}

// ---- client ----------------------------------------------------------------------------------

/** A client for a Consul-compatible agent's HTTP API (consul-rs or HashiCorp Consul). */
class Client {
  constructor(options) {
    const o = opts(options);
    const config = {
      address: optStr(o.address, 'address'),
      token: optStr(o.token, 'token'),
      tokenFile: optStr(o.tokenFile, 'tokenFile'),
      datacenter: optStr(o.datacenter, 'datacenter'),
      timeoutMs: optNum(o.timeoutMs, 'timeoutMs'),
      // HTTPS, as Consul's client: each unset option falls back to its CONSUL_* variable.
      caFile: optStr(o.caFile, 'caFile'),
      caPath: optStr(o.caPath, 'caPath'),
      clientCert: optStr(o.clientCert, 'clientCert'),
      clientKey: optStr(o.clientKey, 'clientKey'),
      tlsServerName: optStr(o.tlsServerName, 'tlsServerName'),
      insecureSkipVerify: optBool(o.insecureSkipVerify, 'insecureSkipVerify'),
      https: o.https === undefined || o.https === null ? undefined : optBool(o.https, 'https'),
    };
    this._n = sync(() => new native.NativeClient(config));
    this._closed = false;
    this._agent = undefined; // the embedded Agent this client came from
    this.kv = new KV(this);
    this.status = new Status(this);
    this.catalog = new Catalog(this);
    this.health = new Health(this);
    this.agent = new AgentAPI(this);
    this.session = new Session(this);
    this.event = new Events(this);
    this.watch = new Watches(this);
  }

  /** The agent's base URL. */
  get address() {
    return this._n.address;
  }

  _native() {
    if (this._closed) throw new ConsulError('the client is closed', 'SHUTDOWN');
    return this._n;
  }

  _call(method, ...args) {
    return settle(() => call(this._native(), method, ...args));
  }

  /** Runs a transaction (`/v1/txn`, Consul's operation list). `KV.Value` may be a Buffer or
   * string (encoded for you); answer values come back as Buffers. A rolled-back transaction
   * rejects with code CONFLICT. */
  txn(ops) {
    if (!Array.isArray(ops)) throw typeError('ops', 'an array of operations', ops);
    const wire = ops.map((op, i) => {
      opts(op, `ops[${i}]`);
      if (op.KV && op.KV.Value !== undefined && op.KV.Value !== null) {
        return { ...op, KV: { ...op.KV, Value: bytes(op.KV.Value, `ops[${i}].KV.Value`).toString('base64') } };
      }
      return op;
    });
    return this._call('txn', JSON.stringify(wire)).then((text) => {
      const answer = JSON.parse(text) || {};
      for (const r of answer.Results || []) {
        if (r.KV) r.KV.Value = r.KV.Value ? Buffer.from(r.KV.Value, 'base64') : null;
      }
      return answer;
    });
  }

  /** A live, locally answered set of `service`'s passing instances. */
  discover(service, options) {
    str(service, 'service');
    const o = opts(options);
    const tag = optStr(o.tag, 'tag');
    return new Discovery(sync(() => this._native().discover(service, tag)));
  }

  /** Acquires a lock on `key` (Consul's session lock recipe). With `fn`, runs it while holding
   * the lock and releases afterwards (also when it throws), resolving to its result; without,
   * resolves to the held Lock. Rejects with TIMEOUT after `waitMs`. */
  lock(key, fnOrOptions, maybeOptions) {
    str(key, 'key');
    let body;
    let options = fnOrOptions;
    if (typeof fnOrOptions === 'function') {
      body = fnOrOptions;
      options = maybeOptions;
    }
    const o = opts(options);
    return settle(() => {
      const value = optBytes(o.value, 'value');
      const lockOpts = {
        ttlMs: duration(o.ttl === undefined ? 15000 : o.ttl, 'ttl'),
        lockDelayMs: optDuration(o.lockDelay, 'lockDelay'),
        waitMs: optNum(o.waitMs, 'waitMs'),
        weak: Boolean(o._weak),
      };
      const acquired = this._call('lock', key, value, lockOpts).then((n) => new Lock(n));
      if (!body) return acquired;
      return acquired.then(async (lock) => {
        try {
          return await body(lock);
        } finally {
          await lock.release();
        }
      });
    });
  }

  /** Campaigns for leadership of `key` until resigned; see LeaderElection. */
  leaderElection(key, options) {
    str(key, 'key');
    return new LeaderElection(this, key, opts(options));
  }

  /** Registers a service with this agent and keeps its TTL checks passing until closed. */
  register(options) {
    const reg = registration(options);
    return this._call('register', reg).then((n) => new Registration(n));
  }

  /** Closes the client (idempotent); later calls reject with SHUTDOWN. Watches, discoveries and
   * locks made from it keep running until closed themselves. */
  close() {
    this._closed = true;
  }

  [dispose]() {
    this.close();
  }

  async [asyncDispose]() {
    this.close();
  }
}

class Area {
  constructor(client) {
    this._c = client;
  }
}

/** `/v1/kv`: values in as Buffer or string, out as Buffer; `null` for missing keys. */
class KV extends Area {
  get(key, options) {
    str(key, 'key');
    const o = opts(options);
    return this._c._call('kvGet', key, consistency(o)).then((p) => p || null);
  }

  list(prefix = '', options) {
    str(prefix, 'prefix');
    const o = opts(options);
    return this._c._call('kvList', prefix, consistency(o));
  }

  keys(prefix = '', options) {
    str(prefix, 'prefix');
    const o = opts(options);
    return this._c._call('kvKeys', prefix, optStr(o.separator, 'separator'), consistency(o));
  }

  put(key, value, options) {
    str(key, 'key');
    const v = bytes(value, 'value');
    const o = opts(options);
    return this._c._call('kvPut', key, v, {
      cas: optNum(o.cas, 'cas'),
      flags: optNum(o.flags, 'flags'),
      acquire: optStr(o.acquire, 'acquire'),
      release: optStr(o.release, 'release'),
    });
  }

  delete(key, options) {
    str(key, 'key');
    const o = opts(options);
    return this._c._call('kvDelete', key, optBool(o.recurse, 'recurse'), optNum(o.cas, 'cas'));
  }
}

/** `/v1/status`. */
class Status extends Area {
  leader() {
    return this._c._call('statusLeader');
  }

  peers() {
    return this._c._call('statusPeers');
  }
}

/** `/v1/catalog`. */
class Catalog extends Area {
  services(options) {
    return this._c._call('catalogServices', consistency(opts(options)));
  }

  nodes(options) {
    return this._c._call('catalogNodes', consistency(opts(options)));
  }

  /** `/v1/catalog/register` with Consul's JSON body (`Node`, `Address`, `Service`, `Checks`...). */
  register(reg) {
    opts(reg, 'registration');
    return this._c._call('catalogRegister', JSON.stringify(reg));
  }
}

/** `/v1/health`. */
class Health extends Area {
  service(name, options) {
    str(name, 'name');
    const o = opts(options);
    return this._c._call('healthService', name, optBool(o.passing, 'passing'), optStr(o.tag, 'tag'), consistency(o));
  }

  checks(service) {
    str(service, 'service');
    return this._c._call('healthChecks', service);
  }

  state(state) {
    str(state, 'state');
    return this._c._call('healthState', state);
  }
}

/** `/v1/agent`. */
class AgentAPI extends Area {
  self() {
    return this._c._call('agentSelf').then((t) => JSON.parse(t));
  }

  services() {
    return this._c._call('agentServices');
  }

  checks() {
    return this._c._call('agentChecks');
  }

  members(options) {
    return this._c._call('agentMembers', optBool(opts(options).wan, 'wan'));
  }

  join(address, options) {
    str(address, 'address');
    return this._c._call('agentJoin', address, optBool(opts(options).wan, 'wan'));
  }

  leave() {
    return this._c._call('agentLeave');
  }

  forceLeave(node, options) {
    str(node, 'node');
    return this._c._call('agentForceLeave', node, optBool(opts(options).prune, 'prune'));
  }

  /** Registers a service (with its checks) on the agent; nothing keeps TTL checks passing
   * (register() does that). */
  serviceRegister(options) {
    const reg = registration(options);
    return this._c._call('serviceRegister', reg);
  }

  serviceDeregister(serviceId) {
    str(serviceId, 'serviceId');
    return this._c._call('serviceDeregister', serviceId);
  }

  checkPass(checkId, note) {
    return this._c._call('checkUpdate', str(checkId, 'checkId'), 'pass', optStr(note, 'note'));
  }

  checkWarn(checkId, note) {
    return this._c._call('checkUpdate', str(checkId, 'checkId'), 'warn', optStr(note, 'note'));
  }

  checkFail(checkId, note) {
    return this._c._call('checkUpdate', str(checkId, 'checkId'), 'fail', optStr(note, 'note'));
  }
}

/** `/v1/session`. */
class Session extends Area {
  /** Creates a session; resolves to its ID. */
  create(options) {
    const o = opts(options);
    const body = { Name: optStr(o.name, 'name') || '', Behavior: optStr(o.behavior, 'behavior') || 'release' };
    return settle(() => {
      const ttl = optDuration(o.ttl, 'ttl');
      const delay = optDuration(o.lockDelay, 'lockDelay');
      if (ttl !== undefined) body.TTL = `${Math.round(ttl)}ms`;
      if (delay !== undefined) body.LockDelay = `${Math.round(delay)}ms`;
      if (o.node !== undefined) body.Node = str(o.node, 'node');
      return this._c._call('sessionCreate', JSON.stringify(body));
    });
  }

  destroy(id) {
    return this._c._call('sessionDestroy', str(id, 'id'));
  }

  renew(id) {
    return this._c._call('sessionRenew', str(id, 'id'));
  }
}

/** `/v1/event`: user events. */
class Events extends Area {
  fire(name, payload, options) {
    str(name, 'name');
    const p = optBytes(payload, 'payload');
    const o = opts(options);
    return this._c._call('eventFire', name, p, optStr(o.node, 'node'), optStr(o.service, 'service'), optStr(o.tag, 'tag'));
  }

  list(options) {
    return this._c._call('eventList', optStr(opts(options).name, 'name'));
  }
}

/** Watches over blocking queries: `for await`, next(), or subscribe(). */
class Watches extends Area {
  _make(kind, target, passing, tag, options) {
    const o = opts(options);
    const config = { waitMs: optNum(o.waitMs, 'waitMs'), consistency: consistency(o) };
    const signal = optSignal(o.signal, 'signal');
    const n = sync(() => this._c._native().watch(kind, target, passing, tag, config));
    return new Watch(n, signal);
  }

  /** One key: events carry `KvPair | null`. */
  key(key, options) {
    return this._make('key', str(key, 'key'), false, undefined, options);
  }

  /** Every key under a prefix: events carry `KvPair[]`. */
  keyPrefix(prefix, options) {
    return this._make('keyPrefix', str(prefix, 'prefix'), false, undefined, options);
  }

  /** Alias of keyPrefix. */
  kvPrefix(prefix, options) {
    return this.keyPrefix(prefix, options);
  }

  /** A service's instances (passing only unless `passing: false`): events carry
   * `ServiceEntry[]`. */
  service(name, options) {
    str(name, 'name');
    const o = opts(options);
    const passing = o.passing === undefined ? true : optBool(o.passing, 'passing');
    return this._make('service', name, passing, optStr(o.tag, 'tag'), o);
  }

  /** A service's checks: events carry `HealthCheck[]`. */
  checks(service, options) {
    return this._make('checks', str(service, 'service'), false, undefined, options);
  }

  /** The service list: events carry `{ [name]: tags }`. */
  services(options) {
    return this._make('services', '', false, undefined, options);
  }

  /** The node list: events carry `Node[]`. */
  nodes(options) {
    return this._make('nodes', '', false, undefined, options);
  }

  /** User events seen by the agent (only those named `name` if given): events carry
   * `UserEvent[]`. */
  events(options) {
    const o = opts(options);
    return this._make('events', optStr(o.name, 'name') || '', false, undefined, o);
  }
}

const WATCH_VALUE = {
  key: (ev) => ev.pair || null,
  keyPrefix: (ev) => ev.pairs || [],
  service: (ev) => ev.entries || [],
  checks: (ev) => ev.checks || [],
  services: (ev) => ev.services || {},
  nodes: (ev) => ev.nodes || [],
  events: (ev) => ev.events || [],
};

// Errors after which the native watch has ended (retrying cannot fix them).
const FATAL = new Set(['INVALID_ARGUMENT', 'PERMISSION_DENIED', 'NOT_FOUND']);

/** A running watch. The first event is the current result; each later one differs from the one
 * before (a slow reader gets the latest, never a backlog). Keeps the process alive until
 * closed or unref()'d, and while a next() is pending even after unref(). */
class Watch {
  constructor(nativeWatch, signal) {
    this._w = nativeWatch;
    this._keepAlive = new KeepAlive();
    // Pending next() calls, settled with null by close() at once: the native answer comes through
    // a weak callback, which Node does not wait for once nothing else holds the event loop.
    this._pending = new Set();
    this._signal = signal;
    this._onAbort = () => this.close();
    track(this);
    if (signal) {
      if (signal.aborted) this.close();
      else signal.addEventListener('abort', this._onAbort, { once: true });
    }
  }

  /** The next changed result, or `null` once the watch is closed. While it is pending the
   * process stays alive, also after unref(): `await w.next()` waits, as `await fetch()` does. */
  next() {
    return this._next(true);
  }

  /** next(); `hold`: whether the pending call keeps the process alive (subscribe()'s loop does
   * not, so an unref()'d watch feeding a callback lets the process exit). */
  _next(hold) {
    if (this.closed) return Promise.resolve(null);
    const release = hold ? this._keepAlive.hold() : () => {};
    const answer = new Promise((resolve, reject) => {
      const pending = { resolve };
      this._pending.add(pending);
      call(this._w, 'next').then(
        (ev) => this._pending.delete(pending) && resolve(ev),
        (e) => this._pending.delete(pending) && reject(e),
      );
    });
    return answer.finally(release).then(
      (ev) => {
        if (!ev) {
          this.close();
          return null;
        }
        return { index: ev.index, value: WATCH_VALUE[ev.kind](ev) };
      },
      (e) => {
        if (FATAL.has(e.code)) this.close();
        throw e;
      },
    );
  }

  [Symbol.asyncIterator]() {
    return {
      next: async () => {
        const value = await this.next();
        return value ? { value, done: false } : { value: undefined, done: true };
      },
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /** Calls `callback(null, event)` for every event, on the JS thread, one at a time (an async
   * callback is awaited first); `callback(err)` when the watch fails. stop() closes the watch. */
  subscribe(callback) {
    fn(callback, 'callback');
    let stopped = false;
    const loop = (async () => {
      while (!stopped) {
        let ev;
        try {
          ev = await this._next(false);
        } catch (e) {
          if (!stopped) await callback(e);
          if (this.closed) return;
          continue;
        }
        if (!ev || stopped) return;
        await callback(null, ev);
      }
    })();
    loop.catch((e) => process.nextTick(() => { throw e; }));
    return {
      stop: async () => {
        stopped = true;
        this.close();
        await loop.catch(() => {});
      },
    };
  }

  /** Whether close() was called (or the watch ended). */
  get closed() {
    return this._w.closed;
  }

  /** Stops the watch and resolves pending next() calls with `null`. Idempotent. */
  close() {
    this._closeSync();
    return Promise.resolve();
  }

  _closeSync() {
    this._w.close();
    for (const pending of this._pending) pending.resolve(null);
    this._pending.clear();
    this._keepAlive.stop();
    if (this._signal) this._signal.removeEventListener('abort', this._onAbort);
    untrack(this);
  }

  /** Lets the process exit while this watch is open. */
  unref() {
    this._keepAlive.unref();
    return this;
  }

  /** Undoes unref(). */
  ref() {
    this._keepAlive.ref();
    return this;
  }

  async [asyncDispose]() {
    this.close();
  }

  [dispose]() {
    this.close();
  }
}

const STRATEGIES = new Set(['round_robin', 'random', 'weighted', 'consistent_hash', 'nearest', 'least_latency', 'locality']);

/** A strategy name as the native SDK spells it (`leastLatency` → `least_latency`), or throws. */
function strategyName(raw, name) {
  const s = raw.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).replace(/-/g, '_');
  if (!STRATEGIES.has(s)) throw invalid(name, `unknown strategy ${JSON.stringify(raw)}`);
  return s;
}

/** A live set of a service's passing instances, kept current by a watch; pick() answers
 * locally. Does not keep the process alive. */
class Discovery {
  constructor(n) {
    this._d = n;
    this._closed = false;
    track(this);
  }

  /** Resolves to this discovery once the first result arrived (TIMEOUT after `timeoutMs`). */
  ready(options) {
    const o = opts(options);
    const t = optNum(o.timeoutMs, 'timeoutMs');
    return call(this._d, 'ready', t === undefined ? 10000 : t).then(() => this);
  }

  /** One passing instance, or `null` when there is none. `strategy`: `round_robin` (default),
   * `random`, `weighted`, `consistent_hash` (needs `key`), `nearest`, `least_latency` (by the
   * latencies given to report(); camelCase accepted). Ejected instances are left out. */
  pick(options) {
    const o = opts(options);
    const strategy = strategyName(optStr(o.strategy, 'strategy') || 'round_robin', 'strategy');
    const key = optStr(o.key, 'key');
    if (strategy === 'consistent_hash' && key === undefined) throw invalid('key', 'consistent_hash needs a key');
    return sync(() => this._d.pick(strategy, key)) || null;
  }

  /** Reports how a call to `instance` (from pick()) went: `latencyMs` and `ok` (default
   * true). Drives `least_latency` picks and passive outlier ejection. */
  report(instance, options) {
    if (!instance || typeof instance !== 'object' || !instance.node || !instance.service) {
      throw typeError('instance', 'a ServiceEntry from pick()', instance);
    }
    const o = opts(options);
    const latencyMs = optNum(o.latencyMs, 'latencyMs');
    if (latencyMs === undefined) throw invalid('latencyMs', 'is required');
    const ok = o.ok === undefined ? true : optBool(o.ok, 'ok');
    sync(() => this._d.report(str(instance.node.node, 'instance.node.node'), str(instance.service.id, 'instance.service.id'), latencyMs, ok));
  }

  /** Picks an instance (strategy `least_latency` unless given), awaits `fn(instance)`, and
   * reports the call's duration and whether it threw/rejected; resolves to fn's result.
   * Rejects with code NOT_FOUND when no instance is passing. */
  async call(fn, options) {
    if (typeof fn !== 'function') throw typeError('fn', 'a function', fn);
    const o = opts(options);
    const instance = this.pick({ strategy: o.strategy || 'least_latency', key: o.key });
    if (instance === null) throw new ConsulError('no passing instance to call', 'NOT_FOUND');
    const start = performance.now();
    let ok = false;
    try {
      const out = await fn(instance);
      ok = true;
      return out;
    } finally {
      this.report(instance, { latencyMs: performance.now() - start, ok });
    }
  }

  /** Tunes least-latency and ejection: `ewmaAlpha`, `decayHalfLifeMs`, `consecutiveFailures`,
   * `maxErrorRate`, `errorWindowMs`, `minRequests`, `baseEjectionMs`, `maxEjectionMs`,
   * `maxEjectedShare`. */
  configureBalancer(options) {
    const o = opts(options);
    const n = (k) => optNum(o[k], k);
    sync(() => this._d.configureBalancer({
      ewmaAlpha: n('ewmaAlpha'), decayHalfLifeMs: n('decayHalfLifeMs'), consecutiveFailures: n('consecutiveFailures'),
      maxErrorRate: n('maxErrorRate'), errorWindowMs: n('errorWindowMs'), minRequests: n('minRequests'),
      baseEjectionMs: n('baseEjectionMs'), maxEjectionMs: n('maxEjectionMs'), maxEjectedShare: n('maxEjectedShare'),
    }));
  }

  /** Tunes `pick({ strategy: 'locality' })`: the caller's zone first, then its region, then
   * anywhere, widening when the nearer ring has fewer than `minHealthy` passing, not-ejected
   * instances; each ring picks with its own strategy (`zoneStrategy`, `regionStrategy`,
   * `otherStrategy`). `locality: { region, zone }` is the caller's (default: the local agent's;
   * `null` returns to it). Omitted settings keep their values; a bad one throws (code
   * INVALID_ARGUMENT) and changes nothing. */
  setLocalityPolicy(options) {
    const o = opts(options);
    const strat = (k) => {
      const v = optStr(o[k], k);
      return v === undefined ? undefined : strategyName(v, k);
    };
    let locality;
    if (o.locality === null) {
      locality = { region: '', zone: '' };
    } else if (o.locality !== undefined) {
      if (typeof o.locality !== 'object') throw typeError('locality', 'an object { region, zone }', o.locality);
      locality = { region: optStr(o.locality.region, 'locality.region') || '', zone: optStr(o.locality.zone, 'locality.zone') || '' };
    }
    const minHealthy = optNum(o.minHealthy, 'minHealthy');
    if (minHealthy !== undefined && (!Number.isInteger(minHealthy) || minHealthy < 0)) throw invalid('minHealthy', 'expected a count');
    sync(() => this._d.setLocalityPolicy({
      minHealthy, zoneStrategy: strat('zoneStrategy'), regionStrategy: strat('regionStrategy'),
      otherStrategy: strat('otherStrategy'), locality,
    }));
  }

  /** The caller's `{ region, zone }` that `locality` picks use, or `null` while unknown. */
  get callerLocality() {
    return this._d.callerLocality() || null;
  }

  /** Whether `instance` is left out of picks for failing. */
  isEjected(instance) {
    if (!instance || !instance.node || !instance.service) throw typeError('instance', 'a ServiceEntry from pick()', instance);
    return this._d.isEjected(instance.node.node, instance.service.id);
  }

  /** The current passing instances. */
  get instances() {
    return this._d.instances();
  }

  /** The index of the current set. */
  get index() {
    return this._d.index;
  }

  /** Stops tracking. Idempotent. */
  close() {
    this._closeSync();
    return Promise.resolve();
  }

  _closeSync() {
    this._closed = true;
    this._d.close();
    untrack(this);
  }

  async [asyncDispose]() {
    this.close();
  }

  [dispose]() {
    this.close();
  }
}

/** A held lock; `signal` aborts when it is lost (session gone) or released. */
class Lock {
  constructor(n) {
    this._l = n;
    this._controller = new AbortController();
    this._released = false;
    track(this);
    call(n, 'lost').then(
      () => this._lost(),
      () => this._lost(),
    );
  }

  _lost() {
    if (!this._controller.signal.aborted) {
      this._controller.abort(new ConsulError(`lock ${JSON.stringify(this.key)} is no longer held`, 'CONFLICT'));
    }
  }

  get key() {
    return this._l.key;
  }

  get session() {
    return this._l.session;
  }

  /** Whether the lock is still held. */
  get held() {
    return !this._released && this._l.held;
  }

  /** Aborts when the lock is lost or released. */
  get signal() {
    return this._controller.signal;
  }

  /** Releases the key and destroys the session. Idempotent. */
  release() {
    if (this._released) return Promise.resolve();
    this._released = true;
    untrack(this);
    return call(this._l, 'release').finally(() => this._lost());
  }

  _closeSync() {
    if (this._released) return;
    this._released = true;
    untrack(this);
    this._l.releaseSync(1000);
  }

  async [asyncDispose]() {
    await this.release();
  }
}

/** Campaigns for leadership of a key (a lock held while the session lives), again and again
 * until resign(). Emits `elected` and `lost` (and `error` when listened to). Keeps the process
 * alive until resigned or unref()'d. */
class LeaderElection extends EventEmitter {
  // The campaign itself is the native SDK's (shared with Python and C); this turns its changes
  // into 'elected' / 'lost' events and waitForLeadership() answers.
  constructor(client, key, o) {
    super();
    const value = optBytes(o.value, 'value');
    const ttl = duration(o.ttl === undefined ? 15000 : o.ttl, 'ttl');
    if (o.onElected !== undefined) this.on('elected', fn(o.onElected, 'onElected'));
    if (o.onLost !== undefined) this.on('lost', fn(o.onLost, 'onLost'));
    this._n = sync(() => client._n.elect(key, value, ttl));
    this._stopped = false;
    this._elected = false;
    this._keepAlive = new KeepAlive();
    this._waiters = new Set();
    track(this);
    this._loop = this._run();
  }

  async _run() {
    while (!this._stopped) {
      let event;
      try {
        event = await call(this._n, 'nextEvent');
      } catch (e) {
        if (this._stopped) break;
        if (this.listenerCount('error') > 0) this.emit('error', e);
        continue;
      }
      if (event === null || event === undefined) break;
      if (event === 'elected') {
        this._elected = true;
        for (const w of this._waiters) w(true);
        this._waiters.clear();
        this.emit('elected');
      } else if (event === 'lost') {
        this._elected = false;
        if (!this._stopped) this.emit('lost');
      }
    }
  }

  /** Whether this process holds leadership now. */
  get isLeader() {
    return this._elected && this._n.isLeader;
  }

  /** Resolves `true` once elected, `false` after `timeoutMs` or on resign(). While it is
   * pending the process stays alive, also after unref(). */
  waitForLeadership(options) {
    const t = optNum(opts(options).timeoutMs, 'timeoutMs');
    if (this.isLeader) return Promise.resolve(true);
    if (this._stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      let timer;
      const release = this._keepAlive.hold();
      const done = (v) => {
        clearTimeout(timer);
        release();
        this._waiters.delete(done);
        resolve(v);
      };
      this._waiters.add(done);
      if (t !== undefined) timer = setTimeout(() => done(false), t);
    });
  }

  /** Stops campaigning and gives up leadership. Idempotent. */
  async resign() {
    this._stopped = true;
    this._elected = false;
    this._keepAlive.stop();
    untrack(this);
    for (const w of this._waiters) w(false);
    this._waiters.clear();
    await call(this._n, 'resign').catch(() => {});
    await this._loop;
  }

  _closeSync() {
    this._stopped = true;
    this._keepAlive.stop();
    untrack(this);
    this._n.resignSync(2000);
  }

  unref() {
    this._keepAlive.unref();
    return this;
  }

  ref() {
    this._keepAlive.ref();
    return this;
  }

  async [asyncDispose]() {
    await this.resign();
  }
}

/** A service registered by this process, its TTL checks kept passing from a background task;
 * deregistered by close(), at process exit, and on SIGINT/SIGTERM. Does not keep the process
 * alive. */
class Registration {
  constructor(n) {
    this._r = n;
    track(this);
  }

  get serviceId() {
    return this._r.serviceId;
  }

  get checkIds() {
    return this._r.checkIds;
  }

  get closed() {
    return this._r.closed;
  }

  /** Stops the keep-alive and deregisters. Idempotent. */
  close() {
    untrack(this);
    return call(this._r, 'close');
  }

  _closeSync() {
    untrack(this);
    if (!this._r.closed) this._r.closeSync(2000);
  }

  async [asyncDispose]() {
    await this.close();
  }
}

/** The Agent embedded in this process that register() uses when given no `client` or `agent`:
 * the running one, undefined when none runs. With several running, which one is meant is
 * unclear: INVALID_ARGUMENT (pass `agent` or `client`). */
function embeddedAgent() {
  const running = [...live].filter((o) => o instanceof Agent && o.running);
  if (running.length > 1) {
    throw invalid('agent', `${running.length} Agents run in this process: pass { agent } or { client } to choose one`);
  }
  return running[0];
}

/** Registers this process's service and keeps its TTL checks passing; deregisters on close(),
 * at exit, on SIGINT and SIGTERM. The agent is `client`, else `agent`, else the Agent embedded
 * in this process, else `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500 (the order of the Python and C
 * packages). Wrong argument types throw a TypeError; every other failure, a bad value
 * included, rejects. */
function register(options) {
  return settle(() => {
    const o = opts(options, 'registration');
    const { client, agent, token, ...reg } = o;
    if (client !== undefined && !(client instanceof Client)) throw typeError('client', 'a Client', client);
    optStr(token, 'token');
    if (agent !== undefined && !(agent instanceof Agent)) throw typeError('agent', 'an Agent', agent);
    registration(reg); // checked now, before an agent is chosen
    if (client !== undefined && token !== undefined) throw invalid('token', 'pass it to the client, or pass no client');
    let c = client;
    if (!c) {
      const a = agent || embeddedAgent();
      const co = token === undefined ? {} : { token };
      c = a ? a.client(co) : new Client(co);
    }
    return c.register(reg);
  });
}

// Promise-returning methods: argument type errors throw synchronously, every other failure
// (bad values included) becomes a rejection.
function settleMethods(cls, names = Object.getOwnPropertyNames(cls.prototype).filter((n) => n !== 'constructor')) {
  for (const name of names) {
    const f = cls.prototype[name];
    Object.defineProperty(cls.prototype, name, {
      value: { [name](...args) { return settle(() => f.apply(this, args)); } }[name],
      writable: true,
      configurable: true,
    });
  }
}
for (const cls of [KV, Status, Catalog, Health, AgentAPI, Session, Events]) settleMethods(cls);
settleMethods(Client, ['txn', 'register']);

// ---- embedded agent --------------------------------------------------------------------------

/** A consul-rs node inside this process: a server (default) or a client agent. Keeps the process
 * alive until shut down or unref()'d. */
/** The Consul config-file keys an Agent hands to the native parser: `config`, `tls`,
 * `ports.https` and `ports.http: -1` (HTTP off). */
function agentConfigJson(o, ports) {
  const merged = { ...opts(o.config, 'config') };
  if (o.tls !== undefined) merged.tls = opts(o.tls, 'tls');
  const extra = {};
  if (ports.https !== undefined) extra.https = optNum(ports.https, 'ports.https');
  if (ports.http === -1) extra.http = -1;
  if (Object.keys(extra).length > 0) merged.ports = { ...opts(merged.ports, 'config.ports'), ...extra };
  return Object.keys(merged).length > 0 ? JSON.stringify(merged) : undefined;
}

class Agent {
  constructor(n, tmpDir) {
    this._a = n;
    this._tmp = tmpDir;
    this._keepAlive = new KeepAlive();
    track(this);
  }

  /** Starts a node and resolves once it serves (and, for a dev or single-server node, once it
   * is leader). Options: nodeName, dev, server (default true), bootstrapExpect, dataDir,
   * datacenter, bindAddr, ports: { http, dns, serfLan, serfWan, server } (0 = any free port, the
   * default), retryJoin, raftMultiplier, waitForLeader, timeoutMs, acl (Consul's `acl { … }`
   * keys: enabled, defaultPolicy, downPolicy, tokenTtl, policyTtl, roleTtl, enableKeyListPolicy,
   * enableTokenPersistence, tokens: { initialManagement, agent, default, agentRecovery,
   * replication, configFileServiceRegistration, dns }; snake_case keys work too).
   *
   * TLS: `tls` is Consul's `tls { … }` block with its own (snake_case) keys, e.g. `{ defaults: {
   * ca_file, cert_file, key_file, verify_incoming: true, verify_outgoing: true }, internal_rpc: {
   * verify_server_hostname: true } }`; `ports.https` opens the HTTPS API (0 = any free port;
   * `httpsAddr` says which) and `ports.http: -1` turns plain HTTP off, after which `client()`
   * speaks HTTPS with the node's own CA and certificate. `config` takes any other Consul
   * config-file keys (`node_meta`, `dns_config`, `limits`, `services`, …), read by the consul-rs
   * binary's own parser: each is honoured, accepted without effect or refused exactly as in a
   * config file, and a refused or unknown key rejects with INVALID_ARGUMENT naming it. */
  static start(options) {
    const o = opts(options);
    const bootstrapExpect = optNum(o.bootstrapExpect, 'bootstrapExpect') ?? 0;
    const server = o.server === undefined ? true : optBool(o.server, 'server');
    const dataDir = optStr(o.dataDir, 'dataDir');
    const dev = o.dev === undefined ? server && bootstrapExpect === 0 && dataDir === undefined : optBool(o.dev, 'dev');
    const ports = opts(o.ports, 'ports');
    const port = (name) => optNum(ports[name], `ports.${name}`) ?? 0;
    const nativeOpts = {
      nodeName: optStr(o.nodeName, 'nodeName') ?? `node-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      dev,
      server,
      bootstrapExpect,
      dataDir,
      datacenter: optStr(o.datacenter, 'datacenter') ?? 'dc1',
      bindAddr: optStr(o.bindAddr, 'bindAddr') ?? '127.0.0.1',
      httpPort: ports.http === -1 ? 0 : port('http'),
      serfLanPort: port('serfLan'),
      serfWanPort: port('serfWan'),
      serverPort: port('server'),
      dnsPort: port('dns'),
      retryJoin: strList(o.retryJoin, 'retryJoin'),
      raftMultiplier: optNum(o.raftMultiplier, 'raftMultiplier') ?? 1,
      // Validated natively (the SDK's one mapping onto the agent's ACL settings).
      aclJson: o.acl === undefined ? undefined : JSON.stringify(opts(o.acl, 'acl')),
      configJson: agentConfigJson(o, ports),
    };
    const wait = o.waitForLeader === undefined ? server && (dev || bootstrapExpect <= 1) : optBool(o.waitForLeader, 'waitForLeader');
    const timeoutMs = optNum(o.timeoutMs, 'timeoutMs') ?? 30000;
    return settle(async () => {
      for (const [k, v] of Object.entries(nativeOpts)) {
        if (typeof v === 'number' && (!Number.isInteger(v) || v < 0)) throw invalid(k, `${v} is not a non-negative integer`);
      }
      let tmp;
      if (!dev && dataDir === undefined) {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'consul-rs-agent-'));
        nativeOpts.dataDir = tmp;
      }
      let n;
      try {
        n = await call(native.NativeAgent, 'start', nativeOpts);
      } catch (e) {
        if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
        throw e;
      }
      const agent = new Agent(n, tmp);
      if (wait) {
        try {
          await agent.waitForLeader({ timeoutMs });
        } catch (e) {
          await agent.shutdown().catch(() => {});
          throw e;
        }
      }
      return agent;
    });
  }

  /** `host:port` of the HTTP API. */
  get httpAddr() {
    return this._a.httpAddr;
  }

  /** `host:port` of the HTTPS API (undefined unless `ports.https` and certificates are set). */
  get httpsAddr() {
    return this._a.httpsAddr || undefined;
  }

  /** `host:port` of serf_lan: what other agents join or retryJoin. */
  get serfAddr() {
    return this._a.serfAddr;
  }

  /** `host:port` of the DNS interface (undefined when disabled). */
  get dnsAddr() {
    return this._a.dnsAddr || undefined;
  }

  get nodeName() {
    return this._a.nodeName;
  }

  get running() {
    return this._a.running;
  }

  /** A Client for this agent. */
  client(options) {
    // Plain HTTP whatever CONSUL_HTTP_SSL says (that variable describes some other agent); an
    // HTTPS-only node is reached over HTTPS with its own CA and certificate, which explicit
    // options override.
    const n = this._a.clientOptions;
    const own = { https: n.https };
    if (n.https) {
      for (const k of ['caFile', 'caPath', 'clientCert', 'clientKey']) {
        if (n[k]) own[k] = n[k];
      }
    }
    const c = new Client({ ...own, ...opts(options), address: n.address });
    c._agent = this;
    return c;
  }

  /** Resolves once the agent knows a cluster leader (TIMEOUT after `timeoutMs`, default 30 s). */
  waitForLeader(options) {
    const t = optNum(opts(options).timeoutMs, 'timeoutMs');
    return call(this._a, 'waitForLeader', t === undefined ? 30000 : t);
  }

  /** Joins the gossip pool of the agents at `addresses` (serf_lan `host:port`); resolves to the
   * number joined. */
  join(addresses) {
    const list = typeof addresses === 'string' ? [addresses] : strList(addresses, 'addresses');
    return settle(async () => {
      let joined = 0;
      for (const a of list) {
        await call(this._a, 'join', a);
        joined += 1;
      }
      return joined;
    });
  }

  /** Members of the agent's LAN gossip pool, itself included. */
  members() {
    return call(this._a, 'members');
  }

  /** Leaves the pool gracefully (others see `left`, not `failed`), then shuts down. */
  async leave() {
    try {
      await call(this._a, 'leave');
    } finally {
      this._stopped();
    }
  }

  /** Stops the node. Idempotent. */
  async shutdown() {
    try {
      await call(this._a, 'shutdown');
    } finally {
      this._stopped();
    }
  }

  _stopped() {
    this._keepAlive.stop();
    untrack(this);
    if (this._tmp) {
      fs.rmSync(this._tmp, { recursive: true, force: true });
      this._tmp = undefined;
    }
  }

  _closeSync() {
    try {
      this._a.shutdownSync();
    } finally {
      this._stopped();
    }
  }

  /** Lets the process exit while the agent runs (it is shut down at exit). */
  unref() {
    this._keepAlive.unref();
    return this;
  }

  ref() {
    this._keepAlive.ref();
    return this;
  }

  async [asyncDispose]() {
    await this.shutdown();
  }
}

module.exports = {
  Agent,
  Check,
  Client,
  ConsulError,
  Discovery,
  ErrorCodes,
  LeaderElection,
  Lock,
  Registration,
  Watch,
  register,
};
