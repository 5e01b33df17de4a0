package io.consulrs

import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import java.time.Duration
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

/** Watches as pulls, as Flows and as callbacks: a PUT releases a waiting watch. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class WatchTest {
    private val agent = Agent.start(AgentOptions().nodeName("watch-test"))
    private val client = agent.client()

    @AfterAll
    fun stop() {
        client.close()
        agent.close()
    }

    @Test
    fun `flow delivers the current value then each change and closes the watch`() = runBlocking<Unit> {
        client.kvPut("w/flow", "0")
        val watch = client.watchKey("w/flow")
        val got = async(Dispatchers.IO) { watch.flow().take(3).toList() }
        delay(300)
        client.kvPut("w/flow", "1")
        delay(300)
        client.kvPut("w/flow", "2")
        val events = withTimeout(20_000) { got.await() }
        assertEquals(listOf("0", "1", "2"), events.map { it.pair!!.valueString() })
        assertTrue(events.zipWithNext().all { (a, b) -> b.index > a.index })
        assertTrue(watch.isClosed, "the flow closed its watch when the collection ended")
    }

    @Test
    fun `a PUT releases a blocked next`() = runBlocking<Unit> {
        client.watchKey("w/next").use { w ->
            assertNull(w.next()!!.pair, "the key does not exist yet")
            val pending = async(Dispatchers.IO) { w.next() }
            delay(300)
            assertFalse(pending.isCompleted, "next waits for a change")
            client.kvPut("w/next", "now")
            assertEquals("now", withTimeout(20_000) { pending.await() }!!.pair!!.valueString())
            assertThrows(ConsulTimeoutException::class.java) { w.nextBlocking(Duration.ofMillis(300)) }
        }
    }

    @Test
    fun `prefix and service watches`() = runBlocking<Unit> {
        client.watchPrefix("wp/").use { w ->
            assertEquals(0, w.next()!!.pairs.size)
            client.kvPut("wp/a", "1")
            assertEquals(listOf("wp/a"), withTimeout(20_000) { w.next() }!!.pairs.map { it.key })
        }
        client.watchService("wsvc", passing = false).use { w ->
            assertEquals(0, w.next()!!.entries.size)
            client.serviceRegister("wsvc", port = 1234)
            assertEquals(1234, withTimeout(20_000) { w.next() }!!.entries.single().port)
            client.serviceDeregister("wsvc")
        }
    }

    @Test
    fun `callback form for Java stops its thread on close`() {
        client.kvPutBlocking("w/cb", "a")
        val seen = LinkedBlockingQueue<String>()
        val watch = client.watchKey("w/cb")
        val sub = watch.subscribe({ ev -> seen.add(ev.pair?.valueString() ?: "<none>") })
        assertEquals("a", seen.poll(20, TimeUnit.SECONDS))
        client.kvPutBlocking("w/cb", "b")
        assertEquals("b", seen.poll(20, TimeUnit.SECONDS))
        assertTrue(sub.isActive)
        sub.close()
        assertFalse(sub.isActive, "close() joined the callback thread")
        assertTrue(watch.isClosed)
        client.kvPutBlocking("w/cb", "c")
        assertNull(seen.poll(500, TimeUnit.MILLISECONDS), "no callback after close()")
    }

    @Test
    fun `close releases a pending next with null`() = runBlocking<Unit> {
        val w = client.watchKey("w/close")
        w.next()
        val pending = async(Dispatchers.IO) { w.next() }
        delay(200)
        w.close()
        assertNull(withTimeout(10_000) { pending.await() })
        assertNull(w.next())
    }
}
