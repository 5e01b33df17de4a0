package io.consulrs

import io.consulrs.ffi.FfiCheck
import io.consulrs.ffi.FfiDuration
import io.consulrs.ffi.FfiHealthCheck
import io.consulrs.ffi.FfiKvPair
import io.consulrs.ffi.FfiMember
import io.consulrs.ffi.FfiNode
import io.consulrs.ffi.FfiServiceEntry
import io.consulrs.ffi.FfiTxnOp
import io.consulrs.ffi.FfiUserEvent
import io.consulrs.ffi.FfiWatchEvent
import io.consulrs.ffi.parseOption
import java.time.Duration

/**
 * A KV entry. Indexes and [flags] are Consul's unsigned 64-bit numbers carried bit for bit in a
 * `Long` (flags above 2^63 read as negative; pass them back unchanged).
 */
class KvPair(
    /** The key. */
    val key: String,
    /** The value; `null` for an empty value. */
    val value: ByteArray?,
    /** Client flags. */
    val flags: Long,
    /** Raft index of creation. */
    val createIndex: Long,
    /** Raft index of the last write (what [Client.kvPut]'s `cas` compares). */
    val modifyIndex: Long,
    /** Times a session acquired the key. */
    val lockIndex: Long,
    /** The session holding the key's lock. */
    val session: String?,
) {
    /** The value as UTF-8 text (`""` for an empty value). */
    fun valueString(): String = value?.toString(Charsets.UTF_8) ?: ""

    override fun toString(): String =
        "KvPair(key=$key, value=${valueString()}, flags=$flags, modifyIndex=$modifyIndex, session=$session)"

    internal companion object {
        fun of(p: FfiKvPair) = KvPair(
            p.key, p.value, p.flags.toLong(), p.createIndex.toLong(), p.modifyIndex.toLong(),
            p.lockIndex.toLong(), p.session,
        )
    }
}

/** A node of the catalog. */
data class Node(
    /** Node UUID. */
    val id: String,
    /** Node name. */
    val node: String,
    /** Address. */
    val address: String,
    /** Datacenter. */
    val datacenter: String,
    /** Metadata. */
    val meta: Map<String, String>,
) {
    internal companion object {
        fun of(n: FfiNode) = Node(n.id, n.node, n.address, n.datacenter, n.meta)
    }
}

/** A health check. */
data class HealthCheck(
    /** Node. */
    val node: String,
    /** Check ID. */
    val checkId: String,
    /** Name. */
    val name: String,
    /** `passing`, `warning` or `critical`. */
    val status: String,
    /** Output of the last run. */
    val output: String,
    /** The service instance the check belongs to (empty for node checks). */
    val serviceId: String,
    /** The service name. */
    val serviceName: String,
) {
    internal companion object {
        fun of(c: FfiHealthCheck) =
            HealthCheck(c.node, c.checkId, c.name, c.status, c.output, c.serviceId, c.serviceName)
    }
}

/** One instance of a service with its node and checks. */
data class ServiceEntry(
    /** The node it runs on. */
    val node: Node,
    /** Instance ID. */
    val serviceId: String,
    /** Service name. */
    val service: String,
    /** The address to connect to: the service's, else the node's. */
    val address: String,
    /** Port. */
    val port: Int,
    /** Tags. */
    val tags: List<String>,
    /** Metadata. */
    val meta: Map<String, String>,
    /** Its checks, node-level ones included. */
    val checks: List<HealthCheck>,
    /** The worst status of its checks (`passing` with none). */
    val status: String,
) {
    internal companion object {
        fun of(e: FfiServiceEntry) = ServiceEntry(
            Node.of(e.node), e.serviceId, e.service, e.address, e.port.toInt(), e.tags, e.meta,
            e.checks.map(HealthCheck::of), e.status,
        )
    }
}

/** A member of an agent's gossip pool. */
data class Member(
    /** Node name. */
    val name: String,
    /** Gossip address. */
    val addr: String,
    /** Gossip port. */
    val port: Int,
    /** Serf tags (`role`, `dc`, …). */
    val tags: Map<String, String>,
    /** `alive`, `leaving`, `left`, `failed` or `none`. */
    val status: String,
) {
    internal companion object {
        fun of(m: FfiMember) = Member(m.name, m.addr, m.port.toInt(), m.tags, m.status)
    }
}

/** A user event. */
class UserEvent(
    /** Event UUID. */
    val id: String,
    /** Event name. */
    val name: String,
    /** Payload (`null` when empty). */
    val payload: ByteArray?,
    /** Node name regex it was addressed to. */
    val nodeFilter: String,
    /** Service name regex. */
    val serviceFilter: String,
    /** Tag regex. */
    val tagFilter: String,
    /** Event format version. */
    val version: Int,
    /** Lamport time in the pool (0 in a fire answer). */
    val ltime: Long,
) {
    override fun toString(): String = "UserEvent(id=$id, name=$name, ltime=$ltime)"

    internal companion object {
        fun of(e: FfiUserEvent) = UserEvent(
            e.id, e.name, e.payload, e.nodeFilter, e.serviceFilter, e.tagFilter, e.version.toInt(), e.ltime.toLong(),
        )
    }
}

/**
 * One watch delivery: the latest result at [index]. Which field carries it depends on [kind]:
 * `key` → [pair]; `key_prefix` → [pairs]; `service` → [entries]; `checks` → [checks];
 * `services` → [services]; `nodes` → [nodes]; `events` → [events].
 */
class WatchEvent(
    /** `X-Consul-Index` of the result. */
    val index: Long,
    /** The watch kind. */
    val kind: String,
    /** A key's pair (`null`: the key does not exist). */
    val pair: KvPair?,
    /** A prefix's pairs. */
    val pairs: List<KvPair>,
    /** A service's instances. */
    val entries: List<ServiceEntry>,
    /** A service's checks. */
    val checks: List<HealthCheck>,
    /** Service names and tags. */
    val services: Map<String, List<String>>,
    /** Nodes. */
    val nodes: List<Node>,
    /** User events, oldest first. */
    val events: List<UserEvent>,
) {
    override fun toString(): String = "WatchEvent(index=$index, kind=$kind)"

    internal companion object {
        fun of(e: FfiWatchEvent) = WatchEvent(
            e.index.toLong(), e.kind, e.pair?.let(KvPair::of), e.pairs.map(KvPair::of),
            e.entries.map(ServiceEntry::of), e.checks.map(HealthCheck::of), e.services,
            e.nodes.map(Node::of), e.events.map(UserEvent::of),
        )
    }
}

/** Consistency of a read. */
enum class Consistency(internal val wire: String) {
    /** Leader-lease read (Consul's default). */
    DEFAULT("default"),
    /** Any server may answer. */
    STALE("stale"),
    /** The leader confirms its leadership with a quorum first. */
    CONSISTENT("consistent");

    companion object {
        /** `default`, `stale` or `consistent`, as every binding reads it; [InvalidArgumentException] otherwise. */
        @JvmStatic
        fun parse(name: String): Consistency {
            val canonical = ffi { parseOption("consistency", name) }
            return entries.first { it.wire == canonical }
        }
    }
}

/** How [Discovery.pick] chooses among a service's healthy instances (the SDK's strategies). */
enum class Strategy(internal val wire: String) {
    /** Each instance in turn. */
    ROUND_ROBIN("round_robin"),
    /** Uniformly at random. */
    RANDOM("random"),
    /** At random, in proportion to each instance's passing weight. */
    WEIGHTED("weighted"),
    /** The same instance for the same key while it is there (rendezvous hashing); needs a key. */
    CONSISTENT_HASH("consistent_hash"),
    /** The nearest instance by network coordinates; round-robin while there are none. */
    NEAREST("nearest"),
    /** The lower-latency of two random instances, by the latencies reported with [Discovery.report]. */
    LEAST_LATENCY("least_latency"),
    /** The caller's zone first, then its region, then anywhere. */
    LOCALITY("locality");

    companion object {
        /** A strategy by its name (`round_robin`, `consistent-hash`, …); [InvalidArgumentException] otherwise. */
        @JvmStatic
        fun parse(name: String): Strategy {
            val canonical = ffi { parseOption("strategy", name) }
            return entries.first { it.wire == canonical }
        }
    }
}

/**
 * A duration as a registration takes it: a [java.time.Duration] (sent as seconds) or a Go
 * duration string such as `"1m30s"`, both checked by the SDK with the message every binding
 * shares.
 */
class GoDuration private constructor(internal val ffi: FfiDuration) {
    override fun toString(): String = when (ffi) {
        is FfiDuration.Seconds -> "${ffi.value}s"
        is FfiDuration.Text -> ffi.value
    }

    companion object {
        /** A Go duration string (`"10s"`, `"1m30s"`). */
        @JvmStatic
        fun of(text: String) = GoDuration(FfiDuration.Text(text))

        /** A duration. */
        @JvmStatic
        fun of(duration: Duration) = GoDuration(FfiDuration.Seconds(duration.toNanos() / 1e9))

        /** A number of seconds. */
        @JvmStatic
        fun seconds(seconds: Double) = GoDuration(FfiDuration.Seconds(seconds))
    }
}

/**
 * A health check of a registration. Build one with [ttl], [http], [tcp] or [grpc]; TTL checks
 * are reported passing by the binding (three times per TTL) while the registration is open.
 */
class Check @JvmOverloads constructor(
    /** `ttl`, `http`, `tcp` or `grpc`. */
    val kind: String,
    /** URL (http), `host:port` (tcp) or `host:port[/service]` (grpc); `null` for TTL checks. */
    val target: String? = null,
    /** The TTL (TTL checks). */
    val ttl: GoDuration? = null,
    /** How often the agent runs the check. */
    val interval: GoDuration? = null,
    /** How long one run may take. */
    val timeout: GoDuration? = null,
    /** Deregister the service after it has been critical this long. */
    val deregisterCriticalAfter: GoDuration? = null,
) {
    internal fun toFfi() = FfiCheck(
        kind, target, ttl?.ffi, interval?.ffi, timeout?.ffi, deregisterCriticalAfter?.ffi,
    )

    companion object {
        /** A TTL check the registration keeps passing. */
        @JvmStatic
        fun ttl(ttl: Duration) = Check("ttl", ttl = GoDuration.of(ttl))

        /** A TTL check, its TTL a Go duration string. */
        @JvmStatic
        fun ttl(ttl: String) = Check("ttl", ttl = GoDuration.of(ttl))

        /** An HTTP check of [url] every [interval]. */
        @JvmStatic
        @JvmOverloads
        fun http(url: String, interval: Duration = Duration.ofSeconds(10), timeout: Duration? = null) =
            Check("http", url, interval = GoDuration.of(interval), timeout = timeout?.let(GoDuration::of))

        /** A TCP connect check of [address] (`host:port`) every [interval]. */
        @JvmStatic
        @JvmOverloads
        fun tcp(address: String, interval: Duration = Duration.ofSeconds(10), timeout: Duration? = null) =
            Check("tcp", address, interval = GoDuration.of(interval), timeout = timeout?.let(GoDuration::of))

        /** A gRPC health check of [target] (`host:port[/service]`) every [interval]. */
        @JvmStatic
        @JvmOverloads
        fun grpc(target: String, interval: Duration = Duration.ofSeconds(10), timeout: Duration? = null) =
            Check("grpc", target, interval = GoDuration.of(interval), timeout = timeout?.let(GoDuration::of))

        /** Checks a check kind's name as the SDK reads it; [InvalidArgumentException] otherwise. */
        @JvmStatic
        fun parseKind(kind: String): String = ffi { parseOption("check", kind) }
    }
}

/**
 * One KV operation of [Client.txn] (Consul's `KVTxnOp`). Build them with the companion's
 * functions; every operation of a transaction succeeds or none does.
 */
class TxnOp private constructor(internal val ffi: FfiTxnOp) {
    companion object {
        private fun op(verb: String, key: String, value: ByteArray? = null, flags: Long? = null, index: Long? = null, session: String? = null) =
            TxnOp(FfiTxnOp(verb, key, value, flags?.toULong(), index?.toULong(), session))

        /** Sets [key] to [value] (with [flags]). */
        @JvmStatic
        @JvmOverloads
        fun set(key: String, value: ByteArray, flags: Long? = null) = op("set", key, value, flags)

        /** Sets [key] to the UTF-8 bytes of [value]. */
        @JvmStatic
        fun set(key: String, value: String) = op("set", key, value.toByteArray())

        /** Sets [key] only if its ModifyIndex is [index] (0: only if absent). */
        @JvmStatic
        @JvmOverloads
        fun cas(key: String, value: ByteArray, index: Long, flags: Long? = null) = op("cas", key, value, flags, index)

        /** Reads [key] (fails the transaction if it does not exist). */
        @JvmStatic
        fun get(key: String) = op("get", key)

        /** Reads every key under [prefix]. */
        @JvmStatic
        fun getTree(prefix: String) = op("get-tree", prefix)

        /** Fails the transaction unless [key]'s ModifyIndex is [index]. */
        @JvmStatic
        fun checkIndex(key: String, index: Long) = op("check-index", key, index = index)

        /** Fails the transaction if [key] exists. */
        @JvmStatic
        fun checkNotExists(key: String) = op("check-not-exists", key)

        /** Fails the transaction unless [session] holds [key]. */
        @JvmStatic
        fun checkSession(key: String, session: String) = op("check-session", key, session = session)

        /** Deletes [key]. */
        @JvmStatic
        fun delete(key: String) = op("delete", key)

        /** Deletes every key under [prefix]. */
        @JvmStatic
        fun deleteTree(prefix: String) = op("delete-tree", prefix)

        /** Deletes [key] only if its ModifyIndex is [index]. */
        @JvmStatic
        fun deleteCas(key: String, index: Long) = op("delete-cas", key, index = index)

        /** Acquires [key]'s lock for [session], setting [value]. */
        @JvmStatic
        fun lock(key: String, value: ByteArray, session: String) = op("lock", key, value, session = session)

        /** Releases [key]'s lock held by [session]. */
        @JvmStatic
        fun unlock(key: String, value: ByteArray, session: String) = op("unlock", key, value, session = session)
    }
}
