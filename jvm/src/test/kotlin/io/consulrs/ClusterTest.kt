package io.consulrs

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** Three embedded servers in one JVM form a cluster (a leader is elected, a write on one is read on another), and a client agent joins it. */
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
                // A client agent (no replicated state) joins the servers and forwards to them.
                Agent.start(AgentOptions().nodeName("c-client").server(false).retryJoin(listOf(agents[1].serfAddr))).use { edge ->
                    assertFalse(edge.server)
                    edge.client().use { ec ->
                        assertEquals("from c2", ec.kvGetBlocking("cluster/key", Consistency.CONSISTENT)!!.valueString())
                        assertTrue(ec.kvPutBlocking("cluster/edge", "via client agent"))
                        ec.registerBlocking("edge-svc", port = 1).use {
                            Support.eventually(what = "edge service in the catalog") { "edge-svc" in clients[0].catalogServicesBlocking() }
                        }
                    }
                    Support.eventually(what = "four members") { agents[0].members().count { it.status == "alive" } == 4 }
                }
                assertEquals("via client agent", clients[2].kvGetBlocking("cluster/edge", Consistency.CONSISTENT)!!.valueString())
            } finally {
                clients.forEach { it.close() }
            }
        } finally {
            agents.reversed().forEach { runCatching { it.close() } }
        }
        assertEquals(emptyList<String>(), Support.nativeThreads("consul-agent"), "every agent's threads stopped")
    }
}
