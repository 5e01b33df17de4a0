package io.consulrs

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** Three embedded servers in one JVM form a cluster: a leader is elected, a write on one is read on another. */
class ClusterTest {
    @Test
    fun `three embedded servers elect a leader and replicate`() {
        val agents = mutableListOf<Agent>()
        try {
            val first = Agent.start(AgentOptions().nodeName("c1").bootstrapExpect(3).waitForLeader(false))
            agents += first
            for (name in listOf("c2", "c3")) {
                agents += Agent.start(AgentOptions().nodeName(name).bootstrapExpect(3).retryJoin(listOf(first.serfAddr)).waitForLeader(false))
            }
            agents.forEach { it.waitForLeader(java.time.Duration.ofSeconds(60)) }
            val clients = agents.map { it.client() }
            try {
                Support.eventually(what = "three peers") { clients[0].statusPeersBlocking().size == 3 }
                val leaders = clients.map { it.statusLeaderBlocking() }.toSet()
                assertEquals(1, leaders.size, "every server names the same leader: $leaders")
                assertTrue(leaders.single().isNotEmpty())
                assertEquals(3, agents[0].members().count { it.status == "alive" })
                assertTrue(clients[0].kvPutBlocking("cluster/key", "from c1"))
                assertEquals("from c1", clients[2].kvGetBlocking("cluster/key", Consistency.CONSISTENT)!!.valueString())
                assertTrue(clients[1].kvPutBlocking("cluster/key", "from c2"))
                assertEquals("from c2", clients[0].kvGetBlocking("cluster/key", Consistency.CONSISTENT)!!.valueString())
            } finally {
                clients.forEach { it.close() }
            }
        } finally {
            agents.reversed().forEach { runCatching { it.close() } }
        }
        assertEquals(emptyList<String>(), Support.nativeThreads("consul-agent"), "every agent's threads stopped")
    }
}
