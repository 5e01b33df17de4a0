package io.consulrs

import io.consulrs.ffi.shutdownRuntime
import io.consulrs.ffi.validateRegistration
import java.time.Duration

/** Process-wide entry points: [register] to the local agent, validation, and [shutdown]. */
object Consul {
    /**
     * Registers this process's service with the local agent, keeps its TTL checks passing, and
     * deregisters it on [Registration.close] or at JVM shutdown. The agent is the [Agent]
     * embedded in this JVM when one runs, else the one at `CONSUL_HTTP_ADDR`, else
     * `127.0.0.1:8500` (as in the Python, Node and C packages). [token]: the ACL token it sends
     * (default `CONSUL_HTTP_TOKEN`). Bad values throw [InvalidArgumentException] before anything
     * is sent.
     */
    suspend fun register(name: String, port: Int? = null, address: String? = null, tags: List<String> = emptyList(), meta: Map<String, String> = emptyMap(), checks: List<Check> = emptyList(), id: String? = null, token: String? = null): Registration {
        // Checked before an agent is chosen, so a bad value is refused the same way wherever the
        // registration would have gone.
        validate(name, port, address, tags, meta, checks, id)
        val client = localClient(token)
        try {
            return client.register(name, port, address, tags, meta, checks, id)
        } finally {
            client.close()
        }
    }

    /** Blocking [register]. */
    @JvmStatic
    @JvmOverloads
    fun registerBlocking(name: String, port: Int? = null, address: String? = null, tags: List<String> = emptyList(), meta: Map<String, String> = emptyMap(), checks: List<Check> = emptyList(), id: String? = null, token: String? = null): Registration =
        blocking { register(name, port, address, tags, meta, checks, id, token) }

    /** Checks a registration as [register] will, without sending it; [InvalidArgumentException] otherwise. */
    @JvmStatic
    @JvmOverloads
    fun validate(name: String, port: Int? = null, address: String? = null, tags: List<String> = emptyList(), meta: Map<String, String> = emptyMap(), checks: List<Check> = emptyList(), id: String? = null) {
        ffi { validateRegistration(Client.spec(name, port, address, tags, meta, checks, id)) }
    }

    /** The client [register] uses: the embedded agent's, else `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`. */
    @JvmStatic
    @JvmOverloads
    fun localClient(token: String? = null): Client {
        val agents = Live.agents()
        if (agents.size > 1) {
            throw InvalidArgumentException("agent: ${agents.size} Agents run in this process: use agent.client().register(...) to choose one")
        }
        return agents.firstOrNull()?.client(token) ?: Client(token = token)
    }

    /**
     * Stops the native SDK runtime (its two `consul-sdk` threads), waiting up to [timeout] for its
     * tasks; open watches, discoveries, locks and keep-alives stop with it. Only for hosts that
     * want no native thread left (the runtime is otherwise kept for the life of the process, as
     * in the Python package); a later call starts a new runtime.
     */
    @JvmStatic
    @JvmOverloads
    fun shutdown(timeout: Duration = Duration.ofSeconds(5)) = shutdownRuntime(timeout.toMillis().toULong())
}
