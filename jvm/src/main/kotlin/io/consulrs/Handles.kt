package io.consulrs

import io.consulrs.ffi.FfiDiscovery
import io.consulrs.ffi.FfiElection
import io.consulrs.ffi.FfiLock
import io.consulrs.ffi.FfiRegistration
import io.consulrs.ffi.FfiWatch
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.flow
import kotlinx.coroutines.withTimeoutOrNull
import java.time.Duration
import java.util.concurrent.atomic.AtomicBoolean
import java.util.function.Consumer

/**
 * A running watch: a blocking-query loop in the native library that rides out agent restarts and
 * leader changes and delivers only changed results, coalesced to the latest (a slow reader never
 * sees a backlog). Read it by pulling [next], as a [Flow] ([flow]), or with a callback on a
 * thread of its own ([subscribe], for Java). [close] stops it; pending and later reads then end.
 */
class Watch internal constructor(private val ffi: FfiWatch) : AutoCloseable {
    init {
        Live.track(this)
    }

    /**
     * The next changed result (the first call: the current one); `null` once closed. With
     * [timeout], [ConsulTimeoutException] when nothing changes in time.
     */
    suspend fun next(timeout: Duration? = null): WatchEvent? = ffi { ffi.next(timeout?.secs()) }?.let(WatchEvent::of)

    /** Blocking [next]. */
    @JvmOverloads
    fun nextBlocking(timeout: Duration? = null): WatchEvent? = blocking { next(timeout) }

    /**
     * The results as a cold [Flow]: each collection pulls from this watch until it is closed;
     * the watch is closed when the collection ends (completes, fails or is cancelled), so
     * `client.watchKey("k").flow().take(3).toList()` leaves nothing running.
     */
    fun flow(): Flow<WatchEvent> = flow {
        try {
            while (true) {
                emit(next() ?: break)
            }
        } finally {
            close()
        }
    }

    /**
     * Calls [callback] with each result on a daemon thread of its own (`consul-rs-watch`), until
     * the returned [Subscription] (or this watch) is closed. An error that ends the watch goes to
     * [onError] (if given); an exception thrown by [callback] goes there too and the
     * subscription goes on.
     */
    @JvmOverloads
    fun subscribe(callback: Consumer<WatchEvent>, onError: Consumer<ConsulException>? = null): Subscription =
        Subscription(this, callback, onError)

    /** Whether [close] was called. */
    val isClosed: Boolean get() = ffi.isClosed()

    /** Stops the watch. Idempotent. */
    override fun close() {
        Live.forget(this)
        ffi.stop()
    }
}

/**
 * A callback on a [Watch] ([Watch.subscribe]). [close] stops the watch and joins the thread
 * (unless called from the callback itself), so nothing of it runs afterwards.
 */
class Subscription internal constructor(
    private val watch: Watch,
    callback: Consumer<WatchEvent>,
    onError: Consumer<ConsulException>?,
) : AutoCloseable {
    private val thread = Thread({
        while (true) {
            val ev = try {
                watch.nextBlocking() ?: break
            } catch (e: ConsulException) {
                if (!watch.isClosed) onError?.accept(e)
                break
            }
            try {
                callback.accept(ev)
            } catch (e: Exception) {
                onError?.accept(e as? ConsulException ?: ConsulInternalException("watch callback failed: $e", cause = e))
            }
        }
    }, "consul-rs-watch")

    init {
        Live.pin(this)
        thread.isDaemon = true
        thread.start()
    }

    /** Whether the callback thread still runs. */
    val isActive: Boolean get() = thread.isAlive

    /** Stops the watch and waits for the callback thread to end. Idempotent. */
    override fun close() {
        Live.forget(this)
        watch.close()
        if (Thread.currentThread() !== thread) thread.join(5_000)
    }
}

/**
 * A live set of a service's passing instances, kept current by a watch, with local selection
 * ([pick]). Instances come nearest first when network coordinates exist.
 */
class Discovery internal constructor(private val ffi: FfiDiscovery) : AutoCloseable {
    init {
        Live.track(this)
    }

    /** Waits until the first result arrived; [ConsulTimeoutException] after [timeout]. */
    suspend fun ready(timeout: Duration = Duration.ofSeconds(10)) = ffi { ffi.ready(timeout.secs()) }

    /** Blocking [ready]. */
    @JvmOverloads
    fun readyBlocking(timeout: Duration = Duration.ofSeconds(10)) = blocking { ready(timeout) }

    /**
     * One healthy instance chosen by [strategy] (answered locally, no request); [key] is what
     * [Strategy.CONSISTENT_HASH] hashes. `null` when none is healthy (or before [ready]).
     */
    @JvmOverloads
    fun pick(strategy: Strategy = Strategy.ROUND_ROBIN, key: String? = null): ServiceEntry? =
        ffi { ffi.pick(strategy.wire, key) }?.let(ServiceEntry::of)

    /** [pick] by a strategy's name (`"consistent-hash"`, …). */
    fun pick(strategy: String, key: String?): ServiceEntry? = pick(Strategy.parse(strategy), key)

    /** The current instances. */
    fun instances(): List<ServiceEntry> = ffi { ffi.instances() }.map(ServiceEntry::of)

    /** Reports a call to [instance]: its [latency] and whether it succeeded (drives least-latency picks and outlier ejection). */
    @JvmOverloads
    fun report(instance: ServiceEntry, latency: Duration, ok: Boolean = true) =
        ffi { ffi.report(instance.node.node, instance.serviceId, latency.secs(), ok) }

    /** The index of the current set. */
    val index: Long get() = ffi.index().toLong()

    /** Stops tracking. Idempotent. */
    override fun close() {
        Live.forget(this)
        ffi.stop()
    }
}

/**
 * A held lock ([Client.lock]): its session is renewed in the background until [release] (or
 * [close]), which releases the key and destroys the session.
 */
class Lock internal constructor(private val ffi: FfiLock) : AutoCloseable {
    init {
        Live.track(this)
    }

    /** The locked key. */
    val key: String = ffi.key()

    /** The session holding the lock. */
    val session: String = ffi.session()

    /** Whether the lock is still held (its session alive). */
    val isHeld: Boolean get() = ffi.isHeld()

    /** Waits until the lock is lost (session expired or destroyed) or released. */
    suspend fun lost() = ffi { ffi.lost() }

    /** Releases the key and destroys the session. Idempotent. */
    suspend fun release() {
        Live.forget(this)
        ffi { ffi.release() }
    }

    /** Blocking [release]. */
    fun releaseBlocking() = blocking { release() }

    /** [releaseBlocking]. */
    override fun close() = releaseBlocking()
}

/**
 * A campaign for leadership of a key ([Client.leaderElection]): holds the key's lock while its
 * session lives and campaigns again when it is lost, until [close] (resign). Changes arrive on a
 * daemon thread (`consul-rs-election`) that updates [leadership] and calls the [Listener].
 */
class LeaderElection internal constructor(private val ffi: FfiElection, listener: Listener?) : AutoCloseable {
    /** Hears leadership changes, on the election's thread. */
    interface Listener {
        /** This process became the leader. */
        fun onElected() {}

        /** This process lost leadership (it campaigns again). Not called for [close]. */
        fun onLost() {}
    }

    private val state = MutableStateFlow(false)
    private val thread: Thread
    private val cleanable: java.lang.ref.Cleaner.Cleanable

    init {
        val ffi = ffi
        val state = state
        // The thread holds the native election and the state, never `this`, so a dropped
        // election can still be collected; the cleaner then resigns it and the thread ends.
        thread = Thread({
            while (true) {
                val ev = try {
                    blocking { ffi.nextEvent(null) }
                } catch (_: Exception) {
                    if (ffi.isResigned()) break
                    Thread.sleep(200)
                    continue
                }
                when (ev) {
                    "elected" -> {
                        state.value = true
                        runCatching { listener?.onElected() }
                    }
                    "lost" -> {
                        state.value = false
                        if (!ffi.isResigned()) runCatching { listener?.onLost() }
                    }
                    null -> if (ffi.isResigned()) break
                }
            }
            state.value = false
        }, "consul-rs-election")
        thread.isDaemon = true
        thread.start()
        cleanable = Live.cleaner.register(this) { runCatching { blocking { ffi.resign() } } }
        Live.track(this)
    }

    /** The election's key. */
    val key: String = ffi.key()

    /** Whether this process is the leader now. */
    val isLeader: Boolean get() = state.value && ffi.isLeader()

    /** Leadership as a [StateFlow]: `true` while this process leads. */
    val leadership: StateFlow<Boolean> = state.asStateFlow()

    /** Waits until elected; `false` after [timeout] (or once resigned). */
    suspend fun awaitLeadership(timeout: Duration? = null): Boolean {
        val wait: suspend () -> Boolean = { state.first { it } }
        return if (timeout == null) wait() else withTimeoutOrNull(timeout.toMillis()) { wait() } ?: false
    }

    /** Blocking [awaitLeadership]. */
    @JvmOverloads
    fun waitForLeadership(timeout: Duration? = null): Boolean = blocking { awaitLeadership(timeout) }

    /** Stops campaigning and gives up leadership, then waits for the election thread. Idempotent. */
    override fun close() {
        Live.forget(this)
        try {
            ffi { blocking { ffi.resign() } }
        } finally {
            cleanable.clean()
            if (Thread.currentThread() !== thread) thread.join(5_000)
            state.value = false
        }
    }
}

/**
 * A service registered by this process ([Client.register], [Consul.register]): its TTL checks are
 * reported passing in the background, it is registered again if the agent forgot it, and it is
 * deregistered by [close] or at JVM shutdown (it stays registered while the program runs even if
 * the handle is dropped).
 */
class Registration internal constructor(private val ffi: FfiRegistration) : AutoCloseable {
    private val closed = AtomicBoolean(false)

    init {
        Live.pin(this)
    }

    /** The registered service ID. */
    val serviceId: String = ffi.serviceId()

    /** The IDs of its checks (`service:<id>`, or `service:<id>:<n>` for several). */
    val checkIds: List<String> = ffi.checkIds()

    /** Whether [close] was called. */
    val isClosed: Boolean get() = ffi.isClosed()

    /** Stops the keep-alive and deregisters. Idempotent. */
    suspend fun deregister() {
        Live.forget(this)
        if (closed.compareAndSet(false, true)) ffi { ffi.deregister() }
    }

    /** Blocking [deregister]. */
    override fun close() = blocking { deregister() }
}
