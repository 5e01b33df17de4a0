package io.consulrs

import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import java.io.File
import java.time.Duration

/**
 * Other JVM processes: one registers a service (TTL check kept alive by the binding) that this JVM
 * discovers, and sees go when that JVM ends; others exit with live handles and must exit cleanly.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ProcessTest {
    private val agent = Agent.start(AgentOptions().nodeName("process-test"))
    private val client = agent.client()
    private val dir: File = Support.tempDir("consul-rs-jvm-test-")

    @AfterAll
    fun stop() {
        client.close()
        agent.close()
        Support.deleteTree(dir)
    }

    private fun startRegistrar(name: String): Process {
        val p = Support.spawnJava("io.consulrs.RegisterMain", listOf(name, "9090"), dir, mapOf("CONSUL_HTTP_ADDR" to agent.httpAddr))
        val line = p.inputStream.bufferedReader().readLine()
        assertEquals("registered $name", line, "the second JVM registered")
        return p
    }

    @Test
    fun `a service registered by another JVM is discovered, kept passing, and deregistered at its exit`() {
        val p = startRegistrar("remote-web")
        try {
            client.discover("remote-web").use { d ->
                d.readyBlocking()
                Support.eventually(what = "instance passing") { d.pick(Strategy.ROUND_ROBIN)?.port == 9090 }
                // The TTL is 2 s: still passing after several TTLs means the binding keeps it alive.
                Thread.sleep(5_000)
                assertEquals("passing", d.pick()!!.status)
                assertEquals(9090, d.pick(Strategy.CONSISTENT_HASH, "user-1")!!.port)
                p.destroy() // SIGTERM: the JVM's shutdown hook deregisters
                assertEquals(143, Support.waitFor(p, Duration.ofSeconds(30)))
                Support.eventually(what = "instance gone") { d.pick() == null }
                assertFalse("remote-web" in client.agentServiceIdsBlocking(), "deregistered, not just failing")
            }
        } finally {
            p.destroyForcibly()
        }
    }

    @Test
    fun `a killed JVM's instance leaves the passing set when its TTL runs out`() {
        val p = startRegistrar("remote-killed")
        client.discover("remote-killed").use { d ->
            Support.eventually(what = "instance passing") { d.pick() != null }
            p.destroyForcibly().waitFor()
            Support.eventually(what = "TTL expired") { d.pick() == null }
            client.serviceDeregisterBlocking("remote-killed")
        }
    }

    private fun exitCleanly(mode: String) {
        val out = File(dir, "exit-$mode.log")
        val pb = ProcessBuilder(Support.java, "-Xmx256m", "-cp", Support.classpath, "io.consulrs.ExitMain", mode, agent.httpAddr)
            .directory(dir).redirectErrorStream(true).redirectOutput(out)
        val started = System.nanoTime()
        val p = pb.start()
        val code = Support.waitFor(p, Duration.ofSeconds(60))
        val log = out.readText()
        assertEquals(0, code, "exit code; output:\n$log")
        assertTrue(log.contains("handles open"), log)
        assertFalse(log.contains("panicked") || log.contains("fatal error") || log.contains("SIGSEGV"), log)
        assertEquals(emptyList<String>(), dir.list()!!.filter { it.startsWith("hs_err_pid") || it.startsWith("core") })
        assertTrue(Duration.ofNanos(System.nanoTime() - started) < Duration.ofSeconds(60))
    }

    @Test
    fun `a JVM returning from main with live handles exits 0 without a crash`() = exitCleanly("return")

    @Test
    fun `a JVM calling System exit with live handles and a blocked call exits 0 without a crash`() = exitCleanly("exit")
}

/** The second JVM of [ProcessTest]: registers a service with a 2 s TTL check through CONSUL_HTTP_ADDR and waits. */
object RegisterMain {
    @JvmStatic
    fun main(args: Array<String>) {
        val reg = Consul.registerBlocking(args[0], port = args[1].toInt(), checks = listOf(Check.ttl(Duration.ofSeconds(2))))
        println("registered ${reg.serviceId}")
        System.out.flush()
        Thread.sleep(Long.MAX_VALUE)
    }
}

/**
 * A JVM that opens one of everything (its own embedded agent, a client of the test's agent, a
 * watch with a subscription and a pending read, a lock, an election, a discovery, a registration)
 * and exits without closing any: by returning from main, or by System.exit while a call blocks.
 */
object ExitMain {
    @JvmStatic
    fun main(args: Array<String>) {
        val own = Agent.start(AgentOptions().nodeName("exit-main"))
        val c = Client(args[1])
        val mine = own.client()
        mine.kvPutBlocking("exit/k", "v")
        val watch = mine.watchKey("exit/k")
        watch.subscribe({ })
        val pending = mine.watchPrefix("exit/")
        pending.nextBlocking()
        val lock = c.lockBlocking("exit/lock-${ProcessHandle.current().pid()}")
        val election = mine.leaderElection("exit/leader")
        val discovery = c.discover("consul")
        val reg = mine.registerBlocking("exit-svc", checks = listOf(Check.ttl("5s")))
        println("handles open: ${listOf(lock.isHeld, election.key, discovery.index >= 0, reg.serviceId, own.isRunning)}")
        System.out.flush()
        if (args[0] == "exit") {
            Thread({ runCatching { pending.nextBlocking() } }, "blocked-reader").start()
            Thread.sleep(200)
            System.exit(0)
        }
    }
}
