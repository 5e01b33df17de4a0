// Type declarations of the consul-rs public API (hand-written; the native layer is internal).

/// <reference types="node" />

import { EventEmitter } from 'node:events';

/** The SDK's error codes: `ConsulError.code`. */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'PERMISSION_DENIED'
  | 'CONFLICT'
  | 'TIMEOUT'
  | 'CONNECTION'
  | 'NO_LEADER'
  | 'UNAVAILABLE'
  | 'CANCELLED'
  | 'SHUTDOWN'
  | 'FORKED'
  | 'WOULD_DEADLOCK'
  | 'INTERNAL'
  | 'TOO_LARGE';

export declare const ErrorCodes: Readonly<{ [K in ErrorCode]: K }>;

/** Every failure of a consul-rs call. Wrong argument types throw `TypeError` instead; a bad value
 * is a `ConsulError` with code `INVALID_ARGUMENT`: a rejection from Promise-returning calls, a
 * synchronous throw from synchronous ones (`Check.ttl('ten seconds')`, `new Client(...)`). */
export declare class ConsulError extends Error {
  constructor(message: string, code?: ErrorCode, httpStatus?: number, options?: { cause?: unknown });
  readonly name: 'ConsulError';
  /** What kind of failure (`'NOT_FOUND'`, `'TIMEOUT'`, ...). */
  code: ErrorCode;
  /** The agent's HTTP status, when an agent answered. */
  httpStatus?: number;
}

/** A number of milliseconds, or a Go duration string (`'10s'`, `'1m30s'`, `'500ms'`). */
export type Duration = number | string;

/** Bytes for KV values and payloads: strings are UTF-8 encoded. */
export type Bytes = Buffer | Uint8Array | string;

/** Read consistency: default (leader lease), `consistent` (quorum round) or `stale` (any server). */
export interface ReadOptions {
  consistent?: boolean;
  stale?: boolean;
}

export interface KvPair {
  key: string;
  /** The value, `null` for an empty one. */
  value: Buffer | null;
  flags: number;
  createIndex: number;
  modifyIndex: number;
  lockIndex: number;
  /** The session holding the key's lock. */
  session: string | null;
}

export interface Node {
  id: string;
  node: string;
  address: string;
  datacenter: string;
  taggedAddresses: Record<string, string>;
  meta: Record<string, string>;
  /** Where the node runs (its agent's `locality`). */
  locality?: Locality | null;
}

/** Where a node or service runs (Consul 1.17+). */
export interface Locality {
  region: string;
  zone: string;
}

export interface Service {
  id: string;
  service: string;
  tags: string[];
  /** Empty: the node's address. */
  address: string;
  port: number;
  meta: Record<string, string>;
  weights: { passing: number; warning: number };
  /** Where the instance runs (defaults to its agent's locality). */
  locality?: Locality | null;
}

export interface HealthCheck {
  node: string;
  checkId: string;
  name: string;
  /** `passing`, `warning` or `critical`. */
  status: string;
  output: string;
  serviceId: string;
  serviceName: string;
  /** Measured probe latency (Go duration, e.g. `"312ms"`) on checks with latency thresholds. */
  latency?: string;
}

/** One instance of a service with its node and checks. */
export interface ServiceEntry {
  node: Node;
  service: Service;
  checks: HealthCheck[];
  /** Where to connect: the service's address, else its node's. */
  address: string;
  /** The service port. */
  port: number;
}

export interface Member {
  name: string;
  addr: string;
  port: number;
  tags: Record<string, string>;
  /** Serf status: 1 alive, 2 leaving, 3 left, 4 failed. */
  status: number;
  statusText: 'alive' | 'leaving' | 'left' | 'failed' | 'none';
}

export interface UserEvent {
  id: string;
  name: string;
  payload: Buffer | null;
  nodeFilter: string;
  serviceFilter: string;
  tagFilter: string;
  version: number;
  ltime: number;
}

/** A check attached to a registration. */
export declare class Check {
  private constructor();
  readonly kind: 'http' | 'tcp' | 'grpc' | 'ttl';
  readonly target?: string;
  readonly ttlMs?: number;
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
  readonly deregisterCriticalAfterMs?: number;
  /** HTTP GET: 2xx passing, 429 warning, anything else critical. */
  static http(url: string, options?: CheckTiming): Check;
  /** TCP connect to `host:port`. */
  static tcp(address: string, options?: CheckTiming): Check;
  /** gRPC health of `host:port[/service]`. */
  static grpc(target: string, options?: CheckTiming): Check;
  /** A TTL check, kept passing by `register()` until the registration is closed. */
  static ttl(ttl: Duration, options?: { deregisterCriticalAfter?: Duration }): Check;
}

export interface CheckTiming {
  /** How often (default 10 s). */
  interval?: Duration;
  timeout?: Duration;
  /** Deregister the service after it has been critical this long. */
  deregisterCriticalAfter?: Duration;
}

export interface ServiceRegistration {
  name: string;
  /** Instance ID (default: the name). */
  id?: string;
  port?: number;
  address?: string;
  tags?: string[];
  meta?: Record<string, string>;
  check?: Check;
  checks?: Check[];
}

export interface ClientOptions {
  /** `host:port` or URL (default `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`). */
  address?: string;
  /** ACL token sent as `X-Consul-Token` on every request (default `CONSUL_HTTP_TOKEN`).
   * `tokenFile` beats it; both beat `CONSUL_HTTP_TOKEN_FILE`, which beats `CONSUL_HTTP_TOKEN`. */
  token?: string;
  /** A file holding the ACL token (default `CONSUL_HTTP_TOKEN_FILE`); unreadable: INVALID_ARGUMENT. */
  tokenFile?: string;
  datacenter?: string;
  /** Timeout of a non-blocking request (default 10 000). */
  timeoutMs?: number;
  /** PEM file of the CAs that sign the agent's certificate (default `CONSUL_CACERT`; beats
   * `caPath`; neither: the system's CAs). Unusable: INVALID_ARGUMENT naming it. */
  caFile?: string;
  /** Directory of PEM CA files, read recursively (default `CONSUL_CAPATH`). */
  caPath?: string;
  /** PEM client certificate, for agents with `verify_incoming` (default `CONSUL_CLIENT_CERT`). */
  clientCert?: string;
  /** Its private key (default `CONSUL_CLIENT_KEY`). */
  clientKey?: string;
  /** The name the agent's certificate must carry when the address's host is not it (default
   * `CONSUL_TLS_SERVER_NAME`; a `:port` is dropped). */
  tlsServerName?: string;
  /** Accept any agent certificate (default: `CONSUL_HTTP_SSL_VERIFY=false`). Tests only. */
  insecureSkipVerify?: boolean;
  /** Whether a bare `host:port` address is HTTPS (default `CONSUL_HTTP_SSL`); an `https://`
   * address always is. */
  https?: boolean;
}

export interface WatchOptions extends ReadOptions {
  /** Longest single blocking query (default 5 min). */
  waitMs?: number;
  /** Closes the watch when aborted. */
  signal?: AbortSignal;
}

/** One watch delivery: the result and the `X-Consul-Index` it was read at. */
export interface WatchEvent<T> {
  index: number;
  value: T;
}

export interface Subscription {
  /** Stops delivering and closes the watch. */
  stop(): Promise<void>;
}

/** A running watch over blocking queries. The first event is the current result, each later one
 * differs from the one before. Keeps the process alive until closed or `unref()`'d. */
export declare class Watch<T> implements AsyncIterable<WatchEvent<T>> {
  private constructor();
  /** The next changed result, or `null` once the watch is closed. Keeps the process alive while
   * pending, also after `unref()`. */
  next(): Promise<WatchEvent<T> | null>;
  /** `for await`: ends when the watch is closed; `break` closes it. */
  [Symbol.asyncIterator](): AsyncIterableIterator<WatchEvent<T>>;
  /** Calls `callback` with each event on the JS thread (async callbacks are awaited); on an
   * `unref()`'d watch the process may exit while it waits for the next event. */
  subscribe(callback: (err: ConsulError | null, event?: WatchEvent<T>) => void | Promise<void>): Subscription;
  readonly closed: boolean;
  /** Stops the watch; pending `next()` calls resolve to `null`. Idempotent. */
  close(): Promise<void>;
  unref(): this;
  ref(): this;
  [Symbol.asyncDispose](): Promise<void>;
  [Symbol.dispose](): void;
}

export type DiscoveryStrategy =
  | 'round_robin' | 'roundRobin'
  | 'random'
  | 'weighted'
  | 'consistent_hash' | 'consistentHash'
  | 'nearest'
  | 'least_latency' | 'leastLatency'
  | 'locality';

/** Locality-aware picking (`Discovery.setLocalityPolicy`). */
export interface LocalityPolicy {
  /** Fewest passing, not-ejected instances a ring needs before picks widen. Default 1. */
  minHealthy?: number;
  /** Strategy inside the caller's zone. Default round_robin. */
  zoneStrategy?: Exclude<DiscoveryStrategy, 'locality'>;
  /** Strategy once widened to the region. Default round_robin. */
  regionStrategy?: Exclude<DiscoveryStrategy, 'locality'>;
  /** Strategy once widened to every instance. Default round_robin. */
  otherStrategy?: Exclude<DiscoveryStrategy, 'locality'>;
  /** The caller's locality; `null`: the local agent's. */
  locality?: Locality | null;
}

/** Tuning of least-latency picks and outlier ejection (`Discovery.configureBalancer`). */
export interface BalancerOptions {
  /** Weight of a new latency sample in the moving average, (0, 1]. Default 0.3. */
  ewmaAlpha?: number;
  /** An idle instance's average halves this often, so it is tried again. Default 5000. */
  decayHalfLifeMs?: number;
  /** Failed calls in a row that eject an instance (0: never). Default 5. */
  consecutiveFailures?: number;
  /** Error rate over `errorWindowMs` that ejects (≥ 1: never). Default 0.5. */
  maxErrorRate?: number;
  /** Default 10000. */
  errorWindowMs?: number;
  /** Calls in the window before the rate counts. Default 10. */
  minRequests?: number;
  /** First ejection's length, doubling on repeats. Default 30000. */
  baseEjectionMs?: number;
  /** Default 300000. */
  maxEjectionMs?: number;
  /** Largest share of instances out at once (one always stays). Default 0.5. */
  maxEjectedShare?: number;
}

/** A live set of a service's passing instances; `pick()` answers locally. Does not keep the
 * process alive. */
export declare class Discovery {
  private constructor();
  /** Resolves to this discovery once the first result arrived. */
  ready(options?: { timeoutMs?: number }): Promise<this>;
  /** One passing instance, or `null` when there is none (`consistent_hash` needs `key`). */
  pick(options?: { strategy?: DiscoveryStrategy; key?: string }): ServiceEntry | null;
  /** Reports how a call to `instance` went (drives `least_latency` and outlier ejection). */
  report(instance: ServiceEntry, options: { latencyMs: number; ok?: boolean }): void;
  /** Picks (`least_latency` by default), awaits `fn`, reports its duration and outcome. */
  call<T>(fn: (instance: ServiceEntry) => T | Promise<T>, options?: { strategy?: DiscoveryStrategy; key?: string }): Promise<T>;
  configureBalancer(options: BalancerOptions): void;
  setLocalityPolicy(options: LocalityPolicy): void;
  /** The caller's locality `locality` picks use (set, else the local agent's). */
  readonly callerLocality: Locality | null;
  isEjected(instance: ServiceEntry): boolean;
  readonly instances: ServiceEntry[];
  readonly index: number;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  [Symbol.dispose](): void;
}

export interface LockOptions {
  /** Stored in the key while held. */
  value?: Bytes;
  /** Session TTL, renewed at half of it (default 15 s; 10 s – 24 h). */
  ttl?: Duration;
  /** Session lock-delay (server default 15 s). */
  lockDelay?: Duration;
  /** Give up after this long with `TIMEOUT` (default: wait forever). */
  waitMs?: number;
}

/** A held lock. */
export declare class Lock {
  private constructor();
  readonly key: string;
  readonly session: string;
  readonly held: boolean;
  /** Aborts when the lock is lost (its session expired) or released. */
  readonly signal: AbortSignal;
  /** Releases the key and destroys the session. Idempotent. */
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface LeaderElectionOptions {
  value?: Bytes;
  ttl?: Duration;
  onElected?: () => void;
  onLost?: () => void;
}

/** Campaigns for leadership until `resign()`. Emits `elected`, `lost` and (when listened to)
 * `error`. Keeps the process alive until resigned or `unref()`'d. */
export declare class LeaderElection extends EventEmitter {
  private constructor();
  readonly isLeader: boolean;
  /** `true` once elected, `false` after `timeoutMs` or on resign. Keeps the process alive while
   * pending, also after `unref()`. */
  waitForLeadership(options?: { timeoutMs?: number }): Promise<boolean>;
  resign(): Promise<void>;
  unref(): this;
  ref(): this;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A service registered by this process; deregistered by `close()`, at exit, on SIGINT and
 * SIGTERM. Does not keep the process alive. */
export declare class Registration {
  private constructor();
  readonly serviceId: string;
  readonly checkIds: string[];
  readonly closed: boolean;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface TxnResult {
  Results: Array<{ KV?: { Key: string; Value: Buffer | null; Flags: number; CreateIndex: number; ModifyIndex: number; LockIndex: number; Session?: string } } & Record<string, unknown>> | null;
  Errors: Array<{ OpIndex: number; What: string }> | null;
}

/** A client for a Consul-compatible agent's HTTP API. */
export declare class Client {
  constructor(options?: ClientOptions);
  readonly address: string;
  readonly kv: {
    /** The pair at `key`, or `null`. */
    get(key: string, options?: ReadOptions): Promise<KvPair | null>;
    list(prefix?: string, options?: ReadOptions): Promise<KvPair[]>;
    keys(prefix?: string, options?: ReadOptions & { separator?: string }): Promise<string[]>;
    /** `false` when the `cas` index or the lock condition did not hold. */
    put(key: string, value: Bytes, options?: { cas?: number; flags?: number; acquire?: string; release?: string }): Promise<boolean>;
    delete(key: string, options?: { recurse?: boolean; cas?: number }): Promise<boolean>;
  };
  readonly status: {
    leader(): Promise<string>;
    peers(): Promise<string[]>;
  };
  readonly catalog: {
    services(options?: ReadOptions): Promise<Record<string, string[]>>;
    nodes(options?: ReadOptions): Promise<Node[]>;
    /** `/v1/catalog/register` with Consul's JSON body. */
    register(registration: Record<string, unknown>): Promise<void>;
  };
  readonly health: {
    service(name: string, options?: ReadOptions & { passing?: boolean; tag?: string }): Promise<ServiceEntry[]>;
    checks(service: string): Promise<HealthCheck[]>;
    state(state: 'any' | 'passing' | 'warning' | 'critical'): Promise<HealthCheck[]>;
  };
  readonly agent: {
    self(): Promise<Record<string, any>>;
    services(): Promise<Record<string, Service>>;
    checks(): Promise<Record<string, HealthCheck>>;
    members(options?: { wan?: boolean }): Promise<Member[]>;
    join(address: string, options?: { wan?: boolean }): Promise<void>;
    leave(): Promise<void>;
    forceLeave(node: string, options?: { prune?: boolean }): Promise<void>;
    serviceRegister(registration: ServiceRegistration): Promise<void>;
    serviceDeregister(serviceId: string): Promise<void>;
    checkPass(checkId: string, note?: string): Promise<void>;
    checkWarn(checkId: string, note?: string): Promise<void>;
    checkFail(checkId: string, note?: string): Promise<void>;
  };
  readonly session: {
    /** Resolves to the new session's ID. */
    create(options?: { name?: string; ttl?: Duration; behavior?: 'release' | 'delete'; lockDelay?: Duration; node?: string }): Promise<string>;
    destroy(id: string): Promise<void>;
    renew(id: string): Promise<void>;
  };
  readonly event: {
    fire(name: string, payload?: Bytes, options?: { node?: string; service?: string; tag?: string }): Promise<UserEvent>;
    list(options?: { name?: string }): Promise<UserEvent[]>;
  };
  readonly watch: {
    key(key: string, options?: WatchOptions): Watch<KvPair | null>;
    keyPrefix(prefix: string, options?: WatchOptions): Watch<KvPair[]>;
    kvPrefix(prefix: string, options?: WatchOptions): Watch<KvPair[]>;
    /** Passing instances only unless `passing: false`. */
    service(name: string, options?: WatchOptions & { passing?: boolean; tag?: string }): Watch<ServiceEntry[]>;
    checks(service: string, options?: WatchOptions): Watch<HealthCheck[]>;
    services(options?: WatchOptions): Watch<Record<string, string[]>>;
    nodes(options?: WatchOptions): Watch<Node[]>;
    events(options?: WatchOptions & { name?: string }): Watch<UserEvent[]>;
  };
  /** Runs `ops` as one transaction; rejects with `CONFLICT` when it rolls back. */
  txn(ops: Array<Record<string, any>>): Promise<TxnResult>;
  /** A live set of `service`'s passing instances. */
  discover(service: string, options?: { tag?: string }): Discovery;
  /** Runs `fn` while holding the lock on `key`, then releases it; resolves to `fn`'s result. */
  lock<R>(key: string, fn: (lock: Lock) => R | Promise<R>, options?: LockOptions): Promise<R>;
  /** Acquires the lock on `key` and resolves to it (release it yourself). */
  lock(key: string, options?: LockOptions): Promise<Lock>;
  leaderElection(key: string, options?: LeaderElectionOptions): LeaderElection;
  /** Registers a service with this agent and keeps its TTL checks passing until closed. */
  register(registration: ServiceRegistration): Promise<Registration>;
  /** Later calls reject with `SHUTDOWN`. Idempotent. */
  close(): void;
  [Symbol.dispose](): void;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Registers this process's service (with `client`, else `agent`, else the Agent embedded in
 * this process, else `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500). Wrong argument types throw a
 * `TypeError`; bad values (a port out of range, several embedded Agents and none chosen) and
 * every other failure reject with a `ConsulError`. */
export declare function register(
  registration: ServiceRegistration & { client?: Client; agent?: Agent; /** ACL token when no client is given. */ token?: string },
): Promise<Registration>;

/** The agent's own ACL tokens (Consul's `acl.tokens`). */
export interface AclTokens {
  initialManagement?: string;
  default?: string;
  agent?: string;
  agentRecovery?: string;
  replication?: string;
  configFileServiceRegistration?: string;
  dns?: string;
}

/** Consul's `acl { … }` block (snake_case spellings are accepted too). */
export interface AclOptions {
  enabled?: boolean;
  /** `allow` (default) or `deny`. */
  defaultPolicy?: 'allow' | 'deny';
  /** `extend-cache` (default), `async-cache`, `allow`, `deny`. */
  downPolicy?: 'extend-cache' | 'async-cache' | 'allow' | 'deny';
  /** Seconds, or a Go duration string. */
  tokenTtl?: number | string;
  policyTtl?: number | string;
  roleTtl?: number | string;
  enableKeyListPolicy?: boolean;
  enableTokenPersistence?: boolean;
  tokens?: AclTokens;
}

export interface AgentOptions {
  /** Default: a unique name. */
  nodeName?: string;
  /** In-memory, its own leader (default: a server with no bootstrapExpect and no dataDir). */
  dev?: boolean;
  /** A server (default) or a client agent (joins servers through retryJoin). */
  server?: boolean;
  /** Servers to wait for before electing a leader. */
  bootstrapExpect?: number;
  /** Where to keep state (default: in memory for dev agents, else a temporary dir removed at
   * shutdown). */
  dataDir?: string;
  datacenter?: string;
  /** Default 127.0.0.1. */
  bindAddr?: string;
  /** 0 (the default) picks a free port. `https` opens the HTTPS API (needs `tls` certificates);
   * `http: -1` turns plain HTTP off. */
  ports?: { http?: number; https?: number; dns?: number; serfLan?: number; serfWan?: number; server?: number };
  /** serf_lan addresses to join, retried until they answer. */
  retryJoin?: string[];
  /** Raft timing scale 1–10 (default 1: fast elections). */
  raftMultiplier?: number;
  /** Resolve only once a leader is known (default: for dev and single-server agents). */
  waitForLeader?: boolean;
  /** For waitForLeader (default 30 000). */
  timeoutMs?: number;
  /** Enable ACLs on the node; its clients then pass `token` (`agent.client({ token })`). */
  acl?: AclOptions;
  /** Consul's `tls { … }` block with its own snake_case keys: `{ defaults: { ca_file, cert_file,
   * key_file, verify_incoming, verify_outgoing, tls_min_version, … }, internal_rpc: { …,
   * verify_server_hostname }, https: { … } }`. */
  tls?: Record<string, unknown>;
  /** Any other Consul config-file keys (`node_meta`, `dns_config`, `limits`, …), read by the
   * consul-rs binary's parser; refused or unknown keys reject with INVALID_ARGUMENT. */
  config?: Record<string, unknown>;
}

/** A consul-rs node inside this process. Keeps the process alive until shut down or
 * `unref()`'d; shut down at exit. */
export declare class Agent {
  private constructor();
  static start(options?: AgentOptions): Promise<Agent>;
  readonly httpAddr: string;
  /** The HTTPS API, when `ports.https` is set. */
  readonly httpsAddr: string | undefined;
  readonly serfAddr: string;
  readonly dnsAddr: string | undefined;
  readonly nodeName: string;
  readonly running: boolean;
  client(options?: Omit<ClientOptions, 'address'>): Client;
  waitForLeader(options?: { timeoutMs?: number }): Promise<void>;
  /** Resolves to the number of agents joined. */
  join(addresses: string | string[]): Promise<number>;
  members(): Promise<Member[]>;
  /** Leaves the pool gracefully, then shuts down. */
  leave(): Promise<void>;
  /** Idempotent. */
  shutdown(): Promise<void>;
  unref(): this;
  ref(): this;
  [Symbol.asyncDispose](): Promise<void>;
}
