package io.consulrs

import io.consulrs.ffi.diagnosticPanic
import io.consulrs.ffi.liveHandles
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.time.Duration

/** Handle lifetimes and threads: panics stay inside, dropped handles are cleaned, close() leaves no thread. */
class LifetimeTest {
    @Test
    fun `a panic in the native library is an exception, not a crash`() {
        for (inTask in listOf(false, true)) {
            val e = assertThrows(ConsulInternalException::class.java) { runBlocking { ffi { diagnosticPanic(inTask) } } }
            assertEquals(ErrorCode.INTERNAL, e.code)
            assertTrue(e.message!!.contains("diagnostic panic"), e.message)
        }
    }

    @Test
    fun `handles dropped without close are freed by the cleaner`() {
        Agent.start(AgentOptions().nodeName("cleaner-test")).use { agent ->
            agent.client().use { client ->
                val before = liveHandles()
                fun open() {
                    repeat(10) { client.watchKey("cleaner/$it") }
                    repeat(5) { client.discover("svc-$it") }
                }
                open()
                assertTrue(liveHandles() >= before + 15uL)
                Support.eventually(Duration.ofSeconds(30), "dropped handles freed") {
                    System.gc()
                    liveHandles() <= before
                }
            }
        }
    }

    @Test
    fun `after close no thread the binding started keeps running`() {
        val agent = Agent.start(AgentOptions().nodeName("threads-test"))
        val client = agent.client()
        val watch = client.watchKey("threads/k")
        val sub = watch.subscribe({ })
        val election = client.leaderElection("threads/leader")
        assertTrue(election.waitForLeadership(Duration.ofSeconds(20)))
        val lock = client.lockBlocking("threads/lock")
        val reg = client.registerBlocking("threads-svc", checks = listOf(Check.ttl("10s")))
        val discovery = client.discover("threads-svc")
        assertTrue(Support.bindingThreads().containsAll(listOf("consul-rs-watch", "consul-rs-election")))
        assertTrue(Support.nativeThreads("consul-agent").isNotEmpty())
        sub.close()
        election.close()
        lock.close()
        reg.close()
        discovery.close()
        client.close()
        agent.close()
        assertEquals(emptyList<String>(), Support.bindingThreads())
        assertEquals(emptyList<String>(), Support.nativeThreads("consul-agent"), "the agent's runtime stopped")
        // The SDK runtime is per process (as in Python and C); Consul.shutdown() stops it too.
        Consul.shutdown()
        assertEquals(emptyList<String>(), Support.nativeThreads("consul-sdk"))
        // A later call starts a fresh runtime.
        Client("127.0.0.1:1", timeout = Duration.ofSeconds(1)).use { c ->
            assertThrows(ConsulConnectionException::class.java) { c.kvGetBlocking("k") }
        }
    }
}
