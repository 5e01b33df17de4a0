package io.consulrs

import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import java.time.Duration

/** KV with CAS and flags, transactions, sessions, events, status, catalog and health against an embedded dev agent. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class KvTest {
    private val agent = Agent.start(AgentOptions().nodeName("kv-test"))
    private val client = agent.client()

    @AfterAll
    fun stop() {
        client.close()
        agent.close()
    }

    @Test
    fun `put get list keys delete`() = runBlocking<Unit> {
        assertTrue(client.kvPut("app/a", "1"))
        assertTrue(client.kvPut("app/b/c", "2".toByteArray()))
        assertEquals("1", client.kvGet("app/a")!!.valueString())
        assertNull(client.kvGet("app/missing"))
        assertEquals(listOf("app/a", "app/b/c"), client.kvList("app/").map { it.key })
        assertEquals(listOf("app/a", "app/b/"), client.kvKeys("app/", separator = "/"))
        assertTrue(client.kvDelete("app/", recurse = true))
        assertEquals(emptyList<KvPair>(), client.kvList("app/"))
    }

    @Test
    fun `cas and flags`() {
        val c = client
        assertTrue(c.kvPutBlocking("cas/k", "v1", cas = 0L, flags = 42L))
        val first = c.kvGetBlocking("cas/k")!!
        assertEquals(42L, first.flags)
        // CAS 0: only if absent.
        assertFalse(c.kvPutBlocking("cas/k", "v2", cas = 0L))
        assertFalse(c.kvPutBlocking("cas/k", "v2", cas = first.modifyIndex + 1000))
        assertTrue(c.kvPutBlocking("cas/k", "v2", cas = first.modifyIndex))
        val second = c.kvGetBlocking("cas/k")!!
        assertEquals("v2", second.valueString())
        assertTrue(second.modifyIndex > first.modifyIndex)
        // Flags are Consul's uint64: the full range round-trips bit for bit.
        assertTrue(c.kvPutBlocking("cas/flags", "x", flags = -1L))
        assertEquals(-1L, c.kvGetBlocking("cas/flags")!!.flags)
        assertFalse(c.kvDeleteBlocking("cas/k", cas = first.modifyIndex))
        assertTrue(c.kvDeleteBlocking("cas/k", cas = second.modifyIndex))
        assertNull(c.kvGetBlocking("cas/k"))
        val bytes = ByteArray(256) { it.toByte() }
        assertTrue(c.kvPutBlocking("cas/bin", bytes))
        assertArrayEquals(bytes, c.kvGetBlocking("cas/bin")!!.value)
    }

    @Test
    fun `transactions commit or roll back`() = runBlocking<Unit> {
        val results = client.txn(listOf(TxnOp.set("txn/a", "1"), TxnOp.set("txn/b", "2"), TxnOp.get("txn/a")))
        assertEquals(3, results.size)
        assertEquals("1", results[2]!!.valueString())
        val idx = client.kvGet("txn/a")!!.modifyIndex
        val e = assertThrows(ConflictException::class.java) {
            client.txnBlocking(listOf(TxnOp.set("txn/c", "3"), TxnOp.checkIndex("txn/a", idx + 99)))
        }
        assertEquals(ErrorCode.CONFLICT, e.code)
        assertNull(client.kvGet("txn/c"), "a rolled-back transaction wrote nothing")
        client.txn(listOf(TxnOp.cas("txn/a", "9".toByteArray(), idx), TxnOp.delete("txn/b")))
        assertEquals("9", client.kvGet("txn/a")!!.valueString())
        assertNull(client.kvGet("txn/b"))
    }

    @Test
    fun `sessions acquire and release keys`() = runBlocking<Unit> {
        val s = client.sessionCreate("test", ttl = Duration.ofSeconds(30))
        assertTrue(client.kvPut("sess/k", "v".toByteArray(), acquire = s))
        assertEquals(s, client.kvGet("sess/k")!!.session)
        val other = client.sessionCreate("other")
        assertFalse(client.kvPut("sess/k", "w".toByteArray(), acquire = other))
        client.sessionRenew(s)
        assertTrue(client.kvPut("sess/k", "v".toByteArray(), release = s))
        assertNull(client.kvGet("sess/k")!!.session)
        client.sessionDestroy(s)
        client.sessionDestroy(other)
        assertThrows(NotFoundException::class.java) { runBlocking { client.sessionRenew(s) } }
    }

    @Test
    fun `status catalog health events`() = runBlocking<Unit> {
        assertTrue(client.statusLeader().isNotEmpty())
        assertEquals(1, client.statusPeers().size)
        assertTrue(client.catalogNodes().any { it.node == "kv-test" })
        assertTrue("consul" in client.catalogServices())
        client.serviceRegister("kvweb", port = 8080, tags = listOf("v1"), checks = listOf(Check.ttl("30s")))
        client.checkPass("service:kvweb")
        val entries = client.healthService("kvweb", passing = true)
        assertEquals(1, entries.size)
        assertEquals(8080, entries[0].port)
        assertEquals(listOf("v1"), entries[0].tags)
        assertEquals("passing", entries[0].status)
        assertTrue(client.healthChecks("kvweb").all { it.status == "passing" })
        assertTrue(client.healthState("passing").any { it.serviceName == "kvweb" })
        client.serviceDeregister("kvweb")
        assertFalse("kvweb" in client.agentServiceIds())
        val ev = client.eventFire("deploy", "v2".toByteArray())
        assertEquals("deploy", ev.name)
        Support.eventually(what = "event listed") { runBlocking { client.eventList("deploy") }.any { it.id == ev.id } }
        assertTrue(client.agentMembers().single().status == "alive")
        assertTrue(client.agentSelf().contains("kv-test"))
        assertNotNull(client.address)
    }

    @Test
    fun `register without a client goes to the agent embedded in this JVM`() = runBlocking<Unit> {
        val reg = Consul.register("embedded-web", port = 7070, checks = listOf(Check.ttl("10s")))
        assertEquals(listOf("service:embedded-web"), reg.checkIds)
        assertTrue("embedded-web" in client.agentServiceIds())
        reg.close()
        reg.close()
        assertTrue(reg.isClosed)
        assertFalse("embedded-web" in client.agentServiceIds())
    }

    @Test
    fun `a closed client refuses calls`() {
        val c = agent.client()
        c.close()
        c.close()
        assertThrows(ShutdownException::class.java) { c.kvGetBlocking("x") }
    }
}
