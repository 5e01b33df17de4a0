package io.consulrs

import kotlinx.coroutines.runBlocking
import java.lang.ref.Cleaner
import java.util.Collections
import java.util.WeakHashMap

/**
 * What the binding closes at JVM shutdown, and the fallback for handles never closed.
 *
 * Handles are tracked weakly (a handle the program dropped is freed by uniffi's own
 * `java.lang.ref.Cleaner`, whose drop on the Rust side stops its background task and gives up what
 * it holds), except registrations and subscriptions, which are pinned until closed: registering
 * without keeping the result is the common use, as in the Python package. A JVM shutdown hook
 * (normal exit, `System.exit`, SIGTERM/SIGINT) deregisters registrations, stops subscriptions and
 * elections, releases locks, closes watches and discoveries and shuts embedded agents down, in
 * that order, within [SHUTDOWN_BUDGET_MS], then stops the SDK runtime so no native thread wakes a
 * coroutine while the JVM tears down.
 */
internal object Live {
    /** The binding's own cleaner, for handles with JVM-side work (election threads). */
    val cleaner: Cleaner = Cleaner.create { r -> Thread(r, "consul-rs-cleaner").apply { isDaemon = true } }

    private const val SHUTDOWN_BUDGET_MS = 8_000L

    init {
        // uniffi wakes a suspended call by calling back into the JVM from the SDK runtime's
        // threads. JNA would attach such a native thread for each callback and detach it after,
        // which costs more than the request on a local agent; kept attached (as a daemon, so it
        // never holds the JVM open), a wake-up is a plain call.
        com.sun.jna.Native.setCallbackThreadInitializer(
            io.consulrs.ffi.uniffiRustFutureContinuationCallbackImpl,
            com.sun.jna.CallbackThreadInitializer(true, false, "consul-sdk-wake"),
        )
    }

    private val weak: MutableSet<AutoCloseable> = Collections.synchronizedSet(Collections.newSetFromMap(WeakHashMap()))
    private val pinned: MutableSet<AutoCloseable> = Collections.synchronizedSet(LinkedHashSet())
    @Volatile private var hooked = false
    @Volatile var exiting = false
        private set

    /** Order of closing at exit: lower first. */
    private fun rank(h: AutoCloseable): Int = when (h) {
        is Registration -> 0
        is Subscription -> 1
        is LeaderElection -> 2
        is Lock -> 3
        is Watch, is Discovery -> 4
        is Client -> 5
        is Agent -> 6
        else -> 7
    }

    fun track(h: AutoCloseable) {
        hook()
        weak.add(h)
    }

    fun pin(h: AutoCloseable) {
        hook()
        pinned.add(h)
    }

    fun forget(h: AutoCloseable) {
        weak.remove(h)
        pinned.remove(h)
    }

    /** The embedded agents running in this JVM. */
    fun agents(): List<Agent> = synchronized(weak) { weak.filterIsInstance<Agent>() }.filter { it.isRunning }

    private fun hook() {
        if (hooked) return
        synchronized(this) {
            if (hooked) return
            Runtime.getRuntime().addShutdownHook(Thread(::closeAll, "consul-rs-shutdown"))
            hooked = true
        }
    }

    /** The shutdown hook: closes everything still open, bounded in time. */
    private fun closeAll() {
        exiting = true
        val all = (synchronized(pinned) { pinned.toList() } + synchronized(weak) { weak.toList() })
            .distinct().sortedBy(::rank)
        val worker = Thread({
            for (h in all) {
                try {
                    h.close()
                } catch (_: Throwable) {
                    // At exit nobody can act on the failure; the next handle still gets closed.
                }
            }
        }, "consul-rs-shutdown-worker")
        worker.isDaemon = true
        worker.start()
        worker.join(SHUTDOWN_BUDGET_MS)
        try {
            io.consulrs.ffi.shutdownRuntime(1_000uL)
        } catch (_: Throwable) {
        }
    }
}

/** Runs a suspend call to completion on the calling thread: the blocking twins for Java. */
internal fun <T> blocking(block: suspend () -> T): T = runBlocking { block() }

/** Seconds for the native side. */
internal fun java.time.Duration.secs(): Double = toNanos() / 1e9
