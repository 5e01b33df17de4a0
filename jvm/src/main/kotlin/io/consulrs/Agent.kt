package io.consulrs

import io.consulrs.ffi.AgentOptions as FfiAgentOptions
import io.consulrs.ffi.FfiAgent
import java.nio.file.Files
import java.nio.file.Path
import java.time.Duration
import java.util.Comparator

/**
 * How to start an embedded [Agent]: the options of the Python `Agent(...)`, Node and C agents.
 * Kotlin sets the properties (`AgentOptions().apply { bootstrapExpect = 3 }`), Java chains the
 * setters of the same names (`new AgentOptions().bootstrapExpect(3)`).
 *
 * A server by default. With no [bootstrapExpect] and no [dataDir] it is a dev node (in memory,
 * its own leader). `bootstrapExpect = 3` plus `retryJoin = listOf(first.serfAddr)` on each of
 * three agents forms a cluster in one JVM. `server = false` makes a client agent, which joins
 * servers through [retryJoin]. Ports default to free ones.
 */
class AgentOptions {
    /** Node name (default: `jvm-<pid>-<n>`). */
    var nodeName: String? = null
    /** A server (else a client agent). */
    var server: Boolean = true
    /** A dev node; default: a server without [bootstrapExpect] and [dataDir]. */
    var dev: Boolean? = null
    /** Servers to wait for before bootstrapping (0 or 1: bootstrap alone). */
    var bootstrapExpect: Int = 0
    /** Data directory; a non-dev agent without one gets a temporary one, removed at shutdown. */
    var dataDir: String? = null
    /** Datacenter. */
    var datacenter: String = "dc1"
    /** Address to bind and serve on. */
    var bindAddr: String = "127.0.0.1"
    /** HTTP API port (0: any free one). */
    var httpPort: Int = 0
    /** serf_lan port (0: any free one). */
    var serfLanPort: Int = 0
    /** serf_wan port (0: any free one). */
    var serfWanPort: Int = 0
    /** Server RPC port (0: any free one). */
    var serverPort: Int = 0
    /** DNS port (0: any free one). */
    var dnsPort: Int = 0
    /** serf_lan addresses to join, retried until one answers. */
    var retryJoin: List<String> = emptyList()
    /** Raft timing multiplier. */
    var raftMultiplier: Int = 1
    /** Wait for a leader before returning; default: for a dev or lone server, and for a client agent with [retryJoin]. */
    var waitForLeader: Boolean? = null
    /** How long [waitForLeader] waits. */
    var timeout: Duration = Duration.ofSeconds(30)
    /** Consul's `acl { … }` block as JSON, e.g. `{"enabled": true, "tokens": {"initial_management": "root"}}`. */
    var aclJson: String? = null
    /** Any other Consul config-file keys as JSON (`tls`, `ports`, `node_meta`, …), read by the binary's own parser. */
    var configJson: String? = null

    /** Sets [nodeName]. */ fun nodeName(v: String) = apply { nodeName = v }
    /** Sets [server]. */ fun server(v: Boolean) = apply { server = v }
    /** Sets [dev]. */ fun dev(v: Boolean) = apply { dev = v }
    /** Sets [bootstrapExpect]. */ fun bootstrapExpect(v: Int) = apply { bootstrapExpect = v }
    /** Sets [dataDir]. */ fun dataDir(v: String) = apply { dataDir = v }
    /** Sets [datacenter]. */ fun datacenter(v: String) = apply { datacenter = v }
    /** Sets [bindAddr]. */ fun bindAddr(v: String) = apply { bindAddr = v }
    /** Sets [httpPort]. */ fun httpPort(v: Int) = apply { httpPort = v }
    /** Sets [serfLanPort]. */ fun serfLanPort(v: Int) = apply { serfLanPort = v }
    /** Sets [retryJoin]. */ fun retryJoin(v: List<String>) = apply { retryJoin = v }
    /** Sets [raftMultiplier]. */ fun raftMultiplier(v: Int) = apply { raftMultiplier = v }
    /** Sets [waitForLeader]. */ fun waitForLeader(v: Boolean) = apply { waitForLeader = v }
    /** Sets [timeout]. */ fun timeout(v: Duration) = apply { timeout = v }
    /** Sets [aclJson]. */ fun aclJson(v: String) = apply { aclJson = v }
    /** Sets [configJson]. */ fun configJson(v: String) = apply { configJson = v }
}

/**
 * A consul-rs node running inside this JVM (server or client agent), on native threads of its
 * own. [close] (or [shutdown]) stops it and its threads; so does JVM shutdown. [register] without
 * a client goes to the agent embedded in the process when one runs.
 */
class Agent private constructor(private val ffi: FfiAgent, private val tempDir: Path?, /** Whether this node is a server. */ val server: Boolean) : AutoCloseable {
    init {
        Live.track(this)
    }

    /** `host:port` of the HTTP API. */
    val httpAddr: String = ffi.httpAddr()

    /** `host:port` of serf_lan (what other agents [AgentOptions.retryJoin]). */
    val serfAddr: String = ffi.serfAddr()

    /** The node name. */
    val nodeName: String = ffi.nodeName()

    /** Whether the agent is running. */
    val isRunning: Boolean get() = ffi.isRunning()

    /** A client for this agent's API ([token]: its ACL token, default `CONSUL_HTTP_TOKEN`). */
    @JvmOverloads
    fun client(token: String? = null): Client = Client(ffi { ffi.client(token) })

    /** Waits until the agent knows a leader; [ConsulTimeoutException] after [timeout]. Blocking. */
    @JvmOverloads
    fun waitForLeader(timeout: Duration = Duration.ofSeconds(30)) = ffi { ffi.waitForLeader(timeout.secs()) }

    /** Joins the gossip pool of the agent at [address] (`host[:port]` of its serf_lan). */
    fun join(address: String) = ffi { ffi.join(address) }

    /** Members of this agent's LAN pool. */
    fun members(): List<Member> = ffi { ffi.members() }.map(Member::of)

    /** Leaves the pool gracefully (peers see `left`), then stops. */
    fun leave() {
        try {
            ffi { ffi.leave() }
        } finally {
            cleanup()
        }
    }

    /** Stops the agent and its threads. Idempotent. */
    fun shutdown() {
        try {
            ffi { ffi.shutdown() }
        } finally {
            cleanup()
        }
    }

    private fun cleanup() {
        Live.forget(this)
        tempDir?.let { dir ->
            runCatching { Files.walk(dir).use { s -> s.sorted(Comparator.reverseOrder()).forEach { Files.deleteIfExists(it) } } }
        }
    }

    /** [shutdown]. */
    override fun close() = shutdown()

    companion object {
        private val counter = java.util.concurrent.atomic.AtomicInteger()

        /** Starts a node and returns once it serves (and, see [AgentOptions.waitForLeader], knows a leader). Blocking. */
        @JvmStatic
        @JvmOverloads
        fun start(options: AgentOptions = AgentOptions()): Agent {
            val o = options
            if (o.bootstrapExpect < 0) throw InvalidArgumentException("bootstrap_expect: ${o.bootstrapExpect} is negative")
            for ((name, port) in listOf("http_port" to o.httpPort, "serf_lan_port" to o.serfLanPort, "serf_wan_port" to o.serfWanPort, "server_port" to o.serverPort, "dns_port" to o.dnsPort)) {
                if (port !in 0..65535) throw InvalidArgumentException("$name: $port is out of range 0-65535")
            }
            if (o.retryJoin.any { it.isEmpty() }) throw InvalidArgumentException("retry_join: addresses must not be empty")
            if (!o.server && o.dev == true) throw InvalidArgumentException("dev: a client agent (server=false) cannot be a dev agent")
            if (!o.server && o.bootstrapExpect > 0) throw InvalidArgumentException("bootstrap_expect: only servers bootstrap; a client agent (server=false) joins them")
            val dev = if (!o.server) false else o.dev ?: (o.bootstrapExpect == 0 && o.dataDir == null)
            val temp = if (!dev && o.dataDir == null) Files.createTempDirectory("consul-rs-agent-") else null
            val name = o.nodeName ?: "jvm-${ProcessHandle.current().pid()}-${counter.incrementAndGet()}"
            val native = try {
                ffi {
                    FfiAgent.start(
                        FfiAgentOptions(
                            name, dev, o.server, o.bootstrapExpect.toUInt(), o.dataDir ?: temp?.toString(), o.datacenter,
                            o.bindAddr, o.httpPort.toUShort(), o.serfLanPort.toUShort(), o.serfWanPort.toUShort(),
                            o.serverPort.toUShort(), o.dnsPort.toUShort(), o.retryJoin, o.raftMultiplier.toUInt(),
                            o.aclJson, o.configJson,
                        ),
                    )
                }
            } catch (e: Throwable) {
                temp?.toFile()?.deleteRecursively()
                throw e
            }
            val agent = Agent(native, temp, o.server)
            val wait = o.waitForLeader ?: if (o.server) (dev || o.bootstrapExpect <= 1) else o.retryJoin.isNotEmpty()
            if (wait) {
                try {
                    agent.waitForLeader(o.timeout)
                } catch (e: Throwable) {
                    agent.shutdown()
                    throw e
                }
            }
            return agent
        }
    }
}
