package io.consulrs

import io.consulrs.ffi.ClientOptions
import io.consulrs.ffi.FfiClient
import io.consulrs.ffi.FfiRegistrationSpec
import java.time.Duration
import java.util.concurrent.atomic.AtomicBoolean

/**
 * A client for a Consul-compatible agent's HTTP API: KV (with CAS and flags), transactions,
 * status, catalog, health, the agent's services and checks, user events and sessions; and the
 * handles built on them: [watchKey] and the other watches, [discover], [lock], [leaderElection],
 * [register].
 *
 * Every request is a `suspend` function; each has a blocking twin named `…Blocking` for Java and
 * other non-coroutine callers (it blocks the calling thread, so never call it on a coroutine
 * dispatcher). Options left unset fall back to Consul's environment variables
 * (`CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`; `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_SSL`, …).
 * Failures are [ConsulException]s; bad values are refused with [InvalidArgumentException] before
 * anything is sent. A client is cheap, thread-safe and [AutoCloseable]; [close] frees its
 * connection pool (handles made from it keep working).
 */
class Client internal constructor(internal val ffi: FfiClient) : AutoCloseable {
    private val closed = AtomicBoolean(false)

    /**
     * A client for [address] (`host:port`, `http(s)://host:port` or `unix:///path`; default
     * `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`), sending [token] (default `CONSUL_HTTP_TOKEN`)
     * to [datacenter] (default the agent's), giving up on a non-blocking request after [timeout].
     */
    @JvmOverloads
    constructor(
        address: String? = null,
        token: String? = null,
        datacenter: String? = null,
        timeout: Duration = Duration.ofSeconds(10),
        tls: TlsOptions = TlsOptions(),
    ) : this(
        ffi {
            FfiClient(
                ClientOptions(
                    address, token, tls.tokenFile, datacenter, timeout.secs(), tls.caFile, tls.caPath,
                    tls.clientCert, tls.clientKey, tls.serverName, tls.insecureSkipVerify, tls.https,
                ),
            )
        },
    )

    init {
        Live.track(this)
    }

    /** The agent's base URL. */
    val address: String get() = call { ffi.address() }

    private inline fun <T> call(block: () -> T): T {
        if (closed.get()) throw ShutdownException("the client is closed")
        return ffi(block)
    }

    // ---- KV ----

    /** The pair at [key], `null` when it does not exist. */
    suspend fun kvGet(key: String, consistency: Consistency = Consistency.DEFAULT): KvPair? =
        call { ffi.kvGet(key, consistency.wire, null, null) }.pair?.let(KvPair::of)

    /** Blocking [kvGet]. */
    @JvmOverloads
    fun kvGetBlocking(key: String, consistency: Consistency = Consistency.DEFAULT): KvPair? =
        blocking { kvGet(key, consistency) }

    /** Every pair under [prefix]. */
    suspend fun kvList(prefix: String = "", consistency: Consistency = Consistency.DEFAULT): List<KvPair> =
        call { ffi.kvList(prefix, consistency.wire, null, null) }.pairs.map(KvPair::of)

    /** Blocking [kvList]. */
    @JvmOverloads
    fun kvListBlocking(prefix: String = "", consistency: Consistency = Consistency.DEFAULT): List<KvPair> =
        blocking { kvList(prefix, consistency) }

    /** The key names under [prefix], folded at [separator] (e.g. `"/"`). */
    suspend fun kvKeys(prefix: String = "", separator: String? = null, consistency: Consistency = Consistency.DEFAULT): List<String> =
        call { ffi.kvKeys(prefix, separator, consistency.wire) }

    /** Blocking [kvKeys]. */
    @JvmOverloads
    fun kvKeysBlocking(prefix: String = "", separator: String? = null, consistency: Consistency = Consistency.DEFAULT): List<String> =
        blocking { kvKeys(prefix, separator, consistency) }

    /**
     * Writes [value] at [key]. With [cas], only if the key's ModifyIndex is [cas] (0: only if
     * absent); [flags] are stored with it; [acquire]/[release] take or give up the key's lock for
     * a session. `false` when a CAS or lock condition failed.
     */
    suspend fun kvPut(key: String, value: ByteArray, cas: Long? = null, flags: Long? = null, acquire: String? = null, release: String? = null): Boolean =
        call { ffi.kvPut(key, value, cas?.toULong(), flags?.toULong(), acquire, release) }

    /** [kvPut] of the UTF-8 bytes of [value]. */
    suspend fun kvPut(key: String, value: String, cas: Long? = null, flags: Long? = null): Boolean =
        kvPut(key, value.toByteArray(), cas, flags)

    /** Blocking [kvPut]. */
    @JvmOverloads
    fun kvPutBlocking(key: String, value: ByteArray, cas: Long? = null, flags: Long? = null, acquire: String? = null, release: String? = null): Boolean =
        blocking { kvPut(key, value, cas, flags, acquire, release) }

    /** Blocking [kvPut] of the UTF-8 bytes of [value]. */
    @JvmOverloads
    fun kvPutBlocking(key: String, value: String, cas: Long? = null, flags: Long? = null): Boolean =
        blocking { kvPut(key, value, cas, flags) }

    /** Deletes [key] (with [recurse], every key under it); with [cas], only at that ModifyIndex. `false` when the CAS failed. */
    suspend fun kvDelete(key: String, recurse: Boolean = false, cas: Long? = null): Boolean =
        call { ffi.kvDelete(key, recurse, cas?.toULong()) }

    /** Blocking [kvDelete]. */
    @JvmOverloads
    fun kvDeleteBlocking(key: String, recurse: Boolean = false, cas: Long? = null): Boolean =
        blocking { kvDelete(key, recurse, cas) }

    /**
     * Runs [ops] atomically; answers the pairs they return, in order (`null` for operations that
     * return none). A rolled-back transaction throws [ConflictException] naming the failed operations.
     */
    suspend fun txn(ops: List<TxnOp>): List<KvPair?> = call { ffi.txn(ops.map { it.ffi }) }.map { it?.let(KvPair::of) }

    /** Blocking [txn]. */
    fun txnBlocking(ops: List<TxnOp>): List<KvPair?> = blocking { txn(ops) }

    // ---- status ----

    /** The leader's address (`""` when there is none). */
    suspend fun statusLeader(): String = call { ffi.statusLeader() }

    /** Blocking [statusLeader]. */
    fun statusLeaderBlocking(): String = blocking { statusLeader() }

    /** The voting servers' addresses. */
    suspend fun statusPeers(): List<String> = call { ffi.statusPeers() }

    /** Blocking [statusPeers]. */
    fun statusPeersBlocking(): List<String> = blocking { statusPeers() }

    // ---- catalog and health ----

    /** Service names and their tags. */
    suspend fun catalogServices(consistency: Consistency = Consistency.DEFAULT): Map<String, List<String>> =
        call { ffi.catalogServices(consistency.wire) }

    /** Blocking [catalogServices]. */
    @JvmOverloads
    fun catalogServicesBlocking(consistency: Consistency = Consistency.DEFAULT): Map<String, List<String>> =
        blocking { catalogServices(consistency) }

    /** The catalog's nodes. */
    suspend fun catalogNodes(consistency: Consistency = Consistency.DEFAULT): List<Node> =
        call { ffi.catalogNodes(consistency.wire) }.map(Node::of)

    /** Blocking [catalogNodes]. */
    @JvmOverloads
    fun catalogNodesBlocking(consistency: Consistency = Consistency.DEFAULT): List<Node> = blocking { catalogNodes(consistency) }

    /** The instances of service [name] with their nodes and checks ([passing]: only healthy ones; [tag]: only with it). */
    suspend fun healthService(name: String, passing: Boolean = false, tag: String? = null, consistency: Consistency = Consistency.DEFAULT): List<ServiceEntry> =
        call { ffi.healthService(name, passing, tag, consistency.wire) }.map(ServiceEntry::of)

    /** Blocking [healthService]. */
    @JvmOverloads
    fun healthServiceBlocking(name: String, passing: Boolean = false, tag: String? = null, consistency: Consistency = Consistency.DEFAULT): List<ServiceEntry> =
        blocking { healthService(name, passing, tag, consistency) }

    /** The checks of service [name]. */
    suspend fun healthChecks(name: String): List<HealthCheck> = call { ffi.healthChecks(name) }.map(HealthCheck::of)

    /** Blocking [healthChecks]. */
    fun healthChecksBlocking(name: String): List<HealthCheck> = blocking { healthChecks(name) }

    /** The checks in [state]: `any`, `passing`, `warning` or `critical`. */
    suspend fun healthState(state: String): List<HealthCheck> = call { ffi.healthState(state) }.map(HealthCheck::of)

    /** Blocking [healthState]. */
    fun healthStateBlocking(state: String): List<HealthCheck> = blocking { healthState(state) }

    // ---- agent ----

    /** `/v1/agent/self` as JSON text. */
    suspend fun agentSelf(): String = call { ffi.agentSelf() }

    /** Blocking [agentSelf]. */
    fun agentSelfBlocking(): String = blocking { agentSelf() }

    /** The IDs of the services registered on this agent. */
    suspend fun agentServiceIds(): List<String> = call { ffi.agentServiceIds() }

    /** Blocking [agentServiceIds]. */
    fun agentServiceIdsBlocking(): List<String> = blocking { agentServiceIds() }

    /** Registers a service with the agent once, without keep-alive (see [register] for that). */
    suspend fun serviceRegister(name: String, port: Int? = null, address: String? = null, tags: List<String> = emptyList(), meta: Map<String, String> = emptyMap(), checks: List<Check> = emptyList(), id: String? = null) =
        call { ffi.serviceRegister(spec(name, port, address, tags, meta, checks, id)) }

    /** Blocking [serviceRegister]. */
    @JvmOverloads
    fun serviceRegisterBlocking(name: String, port: Int? = null, address: String? = null, tags: List<String> = emptyList(), meta: Map<String, String> = emptyMap(), checks: List<Check> = emptyList(), id: String? = null) =
        blocking { serviceRegister(name, port, address, tags, meta, checks, id) }

    /** Deregisters service [serviceId] from the agent. */
    suspend fun serviceDeregister(serviceId: String) = call { ffi.serviceDeregister(serviceId) }

    /** Blocking [serviceDeregister]. */
    fun serviceDeregisterBlocking(serviceId: String) = blocking { serviceDeregister(serviceId) }

    /** Reports TTL check [checkId] passing. */
    suspend fun checkPass(checkId: String, note: String? = null) = call { ffi.checkUpdateTtl(checkId, "pass", note) }

    /** Reports TTL check [checkId] warning. */
    suspend fun checkWarn(checkId: String, note: String? = null) = call { ffi.checkUpdateTtl(checkId, "warn", note) }

    /** Reports TTL check [checkId] failing. */
    suspend fun checkFail(checkId: String, note: String? = null) = call { ffi.checkUpdateTtl(checkId, "fail", note) }

    /** Blocking [checkPass]. */
    @JvmOverloads
    fun checkPassBlocking(checkId: String, note: String? = null) = blocking { checkPass(checkId, note) }

    /** Blocking [checkFail]. */
    @JvmOverloads
    fun checkFailBlocking(checkId: String, note: String? = null) = blocking { checkFail(checkId, note) }

    /** Members of the agent's gossip pool (the WAN pool with [wan]). */
    suspend fun agentMembers(wan: Boolean = false): List<Member> = call { ffi.agentMembers(wan) }.map(Member::of)

    /** Blocking [agentMembers]. */
    @JvmOverloads
    fun agentMembersBlocking(wan: Boolean = false): List<Member> = blocking { agentMembers(wan) }

    /** Asks the agent to join the pool of the agent at [address] (`host[:port]` of its serf_lan). */
    suspend fun agentJoin(address: String, wan: Boolean = false) = call { ffi.agentJoin(address, wan) }

    /** Blocking [agentJoin]. */
    @JvmOverloads
    fun agentJoinBlocking(address: String, wan: Boolean = false) = blocking { agentJoin(address, wan) }

    /** Asks the agent to leave its pool gracefully and stop. */
    suspend fun agentLeave() = call { ffi.agentLeave() }

    /** Marks failed member [node] as left ([prune]: forget it). */
    suspend fun agentForceLeave(node: String, prune: Boolean = false) = call { ffi.agentForceLeave(node, prune) }

    // ---- events ----

    /** Fires user event [name] with [payload], for the nodes/services/tags the regexes match. */
    suspend fun eventFire(name: String, payload: ByteArray = ByteArray(0), node: String? = null, service: String? = null, tag: String? = null): UserEvent =
        UserEvent.of(call { ffi.eventFire(name, payload, node, service, tag) })

    /** Blocking [eventFire]. */
    @JvmOverloads
    fun eventFireBlocking(name: String, payload: ByteArray = ByteArray(0), node: String? = null, service: String? = null, tag: String? = null): UserEvent =
        blocking { eventFire(name, payload, node, service, tag) }

    /** The agent's recent user events (named [name], if given), oldest first. */
    suspend fun eventList(name: String? = null): List<UserEvent> = call { ffi.eventList(name) }.map(UserEvent::of)

    /** Blocking [eventList]. */
    @JvmOverloads
    fun eventListBlocking(name: String? = null): List<UserEvent> = blocking { eventList(name) }

    // ---- sessions ----

    /** Creates a session; answers its ID. [behavior] is `release` or `delete`. */
    suspend fun sessionCreate(name: String = "", ttl: Duration? = null, behavior: String = "release", lockDelay: Duration? = null): String =
        call { ffi.sessionCreate(name, ttl?.secs(), behavior, lockDelay?.secs()) }

    /** Blocking [sessionCreate]. */
    @JvmOverloads
    fun sessionCreateBlocking(name: String = "", ttl: Duration? = null, behavior: String = "release", lockDelay: Duration? = null): String =
        blocking { sessionCreate(name, ttl, behavior, lockDelay) }

    /** Destroys session [sessionId] (its locks are released). */
    suspend fun sessionDestroy(sessionId: String) = call { ffi.sessionDestroy(sessionId) }

    /** Blocking [sessionDestroy]. */
    fun sessionDestroyBlocking(sessionId: String) = blocking { sessionDestroy(sessionId) }

    /** Renews session [sessionId]. */
    suspend fun sessionRenew(sessionId: String) = call { ffi.sessionRenew(sessionId) }

    /** Blocking [sessionRenew]. */
    fun sessionRenewBlocking(sessionId: String) = blocking { sessionRenew(sessionId) }

    // ---- watches ----

    private fun watch(kind: String, target: String, passing: Boolean = false, tag: String? = null, wait: Duration, consistency: Consistency) =
        Watch(call { ffi.watch(kind, target, passing, tag, wait.secs(), consistency.wire) })

    /** Watches one key (a blocking-query loop; see [Watch]). */
    @JvmOverloads
    fun watchKey(key: String, wait: Duration = DEFAULT_WAIT, consistency: Consistency = Consistency.DEFAULT): Watch =
        watch("key", key, wait = wait, consistency = consistency)

    /** Watches every key under [prefix]. */
    @JvmOverloads
    fun watchPrefix(prefix: String, wait: Duration = DEFAULT_WAIT, consistency: Consistency = Consistency.DEFAULT): Watch =
        watch("key_prefix", prefix, wait = wait, consistency = consistency)

    /** Watches the instances of service [name] (only passing ones with [passing]; only with [tag]). */
    @JvmOverloads
    fun watchService(name: String, passing: Boolean = true, tag: String? = null, wait: Duration = DEFAULT_WAIT, consistency: Consistency = Consistency.DEFAULT): Watch =
        watch("service", name, passing, tag, wait, consistency)

    /** Watches the checks of service [service]. */
    @JvmOverloads
    fun watchChecks(service: String, wait: Duration = DEFAULT_WAIT): Watch =
        watch("checks", service, wait = wait, consistency = Consistency.DEFAULT)

    /** Watches the catalog's service names and tags. */
    @JvmOverloads
    fun watchServices(wait: Duration = DEFAULT_WAIT): Watch = watch("services", "", wait = wait, consistency = Consistency.DEFAULT)

    /** Watches the catalog's nodes. */
    @JvmOverloads
    fun watchNodes(wait: Duration = DEFAULT_WAIT): Watch = watch("nodes", "", wait = wait, consistency = Consistency.DEFAULT)

    /** Watches the user events this agent sees (only those named [name], if given). */
    @JvmOverloads
    fun watchEvents(name: String? = null, wait: Duration = DEFAULT_WAIT): Watch =
        watch("events", name ?: "", wait = wait, consistency = Consistency.DEFAULT)

    // ---- discovery, locks, elections, registrations ----

    /**
     * Starts tracking the passing instances of [service] (only those with [tag]); pick one with
     * [Discovery.pick]. The set fills in the background: [Discovery.ready] waits for it.
     */
    @JvmOverloads
    fun discover(service: String, tag: String? = null): Discovery = Discovery(call { ffi.discover(service, tag) })

    /**
     * Acquires the lock on [key] (Consul's lock recipe: a session with [ttl], renewed in the
     * background, storing [value]), waiting while another session holds it — at most [wait], then
     * [ConsulTimeoutException]. [lockDelay]: the session's lock-delay (default the server's 15 s).
     */
    suspend fun lock(key: String, value: ByteArray = ByteArray(0), ttl: Duration = Duration.ofSeconds(15), wait: Duration? = null, lockDelay: Duration? = null): Lock =
        Lock(call { ffi.lock(key, value, ttl.secs(), lockDelay?.secs(), wait?.secs()) })

    /** Blocking [lock]. */
    @JvmOverloads
    fun lockBlocking(key: String, value: ByteArray = ByteArray(0), ttl: Duration = Duration.ofSeconds(15), wait: Duration? = null, lockDelay: Duration? = null): Lock =
        blocking { lock(key, value, ttl, wait, lockDelay) }

    /**
     * Campaigns for leadership of [key] until [LeaderElection.close]: holds the lock while its
     * session lives and campaigns again when it is lost; [listener] hears each change.
     */
    @JvmOverloads
    fun leaderElection(key: String, value: ByteArray = ByteArray(0), ttl: Duration = Duration.ofSeconds(15), listener: LeaderElection.Listener? = null): LeaderElection =
        LeaderElection(call { ffi.elect(key, value, ttl.secs()) }, listener)

    /**
     * Registers this process's service with the agent, keeps its TTL [checks] passing in the
     * background, and deregisters it on [Registration.close] or at JVM shutdown.
     */
    suspend fun register(name: String, port: Int? = null, address: String? = null, tags: List<String> = emptyList(), meta: Map<String, String> = emptyMap(), checks: List<Check> = emptyList(), id: String? = null): Registration =
        Registration(call { ffi.register(spec(name, port, address, tags, meta, checks, id)) })

    /** Blocking [register]. */
    @JvmOverloads
    fun registerBlocking(name: String, port: Int? = null, address: String? = null, tags: List<String> = emptyList(), meta: Map<String, String> = emptyMap(), checks: List<Check> = emptyList(), id: String? = null): Registration =
        blocking { register(name, port, address, tags, meta, checks, id) }

    /** Frees the client's connection pool. Idempotent; later calls throw [ShutdownException]. */
    override fun close() {
        if (closed.compareAndSet(false, true)) {
            Live.forget(this)
            ffi.close()
        }
    }

    companion object {
        /** The default longest single blocking query of a watch (5 minutes, as Consul's). */
        @JvmField
        val DEFAULT_WAIT: Duration = Duration.ofMinutes(5)

        internal fun spec(name: String, port: Int?, address: String?, tags: List<String>, meta: Map<String, String>, checks: List<Check>, id: String?) =
            FfiRegistrationSpec(name, id, address, port?.toLong(), tags, meta, checks.map { it.toFfi() })
    }
}

/**
 * The client's HTTPS settings; each unset one falls back to Consul's variable (`CONSUL_CACERT`,
 * `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`,
 * `CONSUL_HTTP_SSL`, `CONSUL_HTTP_SSL_VERIFY`, `CONSUL_HTTP_TOKEN_FILE`).
 */
data class TlsOptions @JvmOverloads constructor(
    /** PEM file of the CAs that sign the agent's certificate. */
    val caFile: String? = null,
    /** Directory of PEM CA files. */
    val caPath: String? = null,
    /** PEM client certificate. */
    val clientCert: String? = null,
    /** PEM key of [clientCert]. */
    val clientKey: String? = null,
    /** The name the agent's certificate must carry. */
    val serverName: String? = null,
    /** Accept any certificate (tests only). */
    val insecureSkipVerify: Boolean = false,
    /** HTTPS for a bare `host:port` address. */
    val https: Boolean? = null,
    /** A file holding the ACL token. */
    val tokenFile: String? = null,
)
