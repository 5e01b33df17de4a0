package io.consulrs

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import java.time.Duration
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** Lock contention between two clients, and a leader election handing over. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class LockTest {
    private val agent = Agent.start(AgentOptions().nodeName("lock-test"))

    @AfterAll
    fun stop() = agent.close()

    @Test
    fun `the second client waits until the first releases`() = runBlocking<Unit> {
        agent.client().use { a ->
            agent.client().use { b ->
                val held = a.lock("locks/job", "a".toByteArray(), lockDelay = Duration.ZERO)
                assertTrue(held.isHeld)
                assertEquals(held.session, a.kvGet("locks/job")!!.session)
                assertThrows(ConsulTimeoutException::class.java) { b.lockBlocking("locks/job", wait = Duration.ofMillis(500)) }
                val waiting = async(Dispatchers.IO) { b.lock("locks/job", "b".toByteArray(), lockDelay = Duration.ZERO) }
                delay(700)
                assertFalse(waiting.isCompleted, "b waits while a holds the lock")
                held.release()
                assertFalse(held.isHeld)
                val second = withTimeout(30_000) { waiting.await() }
                assertTrue(second.isHeld)
                assertEquals("b", a.kvGet("locks/job")!!.valueString())
                second.close()
                assertEquals(null, a.kvGet("locks/job")!!.session)
            }
        }
    }

    @Test
    fun `leader election hands over on resign`() {
        agent.client().use { c ->
            val events = LinkedBlockingQueue<String>()
            val first = c.leaderElection("elect/svc", "one".toByteArray(), listener = object : LeaderElection.Listener {
                override fun onElected() { events.add("first elected") }
            })
            assertTrue(first.waitForLeadership(Duration.ofSeconds(20)))
            assertEquals("first elected", events.poll(5, TimeUnit.SECONDS))
            val second = c.leaderElection("elect/svc", "two".toByteArray(), listener = object : LeaderElection.Listener {
                override fun onElected() { events.add("second elected") }
            })
            assertFalse(second.waitForLeadership(Duration.ofSeconds(1)), "only one leader at a time")
            assertTrue(first.isLeader)
            first.close()
            assertFalse(first.isLeader)
            assertTrue(second.waitForLeadership(Duration.ofSeconds(40)), "leadership handed over")
            assertEquals("second elected", events.poll(5, TimeUnit.SECONDS))
            assertEquals("two", c.kvGetBlocking("elect/svc")!!.valueString())
            second.close()
            assertEquals(emptyList<String>(), Support.bindingThreads().filter { it == "consul-rs-election" })
        }
    }
}
