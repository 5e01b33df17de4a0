package io.consulrs

import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.TestFactory
import org.junit.jupiter.api.TestInstance
import java.io.File
import java.time.Duration

/**
 * Replays the one validation table every binding replays (bindings/sdk/tests/validation_cases.json):
 * each input is accepted, or refused with [InvalidArgumentException] and exactly the table's
 * message. The client points at 127.0.0.1:1, where nothing listens, so a value that got through
 * would fail with CONNECTION instead: a refusal proves nothing was sent.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ValidationTest {
    @Suppress("UNCHECKED_CAST")
    private val table = Json.parse(File(System.getProperty("consulrs.validationCases")).readText()) as Map<String, Any?>
    private val client = Client("127.0.0.1:1", timeout = Duration.ofSeconds(2))

    @AfterAll
    fun close() = client.close()

    private fun dur(v: Any?): GoDuration? = when (v) {
        null -> null
        is Double -> GoDuration.seconds(v)
        is String -> GoDuration.of(v)
        else -> error("duration: $v")
    }

    @Suppress("UNCHECKED_CAST")
    private fun checks(v: Any?): List<Check> = (v as List<Map<String, Any?>>? ?: emptyList()).map {
        Check(it["kind"] as String, it["target"] as String?, dur(it["ttl"]), dur(it["interval"]), dur(it["timeout"]), dur(it["deregister_critical_after"]))
    }

    /** Runs [action], expecting the table's [error] (or success for `null`). */
    private fun expect(error: String?, action: () -> Unit) {
        if (error == null) {
            action()
        } else {
            val e = assertThrows(InvalidArgumentException::class.java) { action() }
            assertEquals(error, e.message)
            assertEquals(ErrorCode.INVALID_ARGUMENT, e.code)
        }
    }

    @Suppress("UNCHECKED_CAST")
    @TestFactory
    fun registrations(): List<DynamicTest> = (table["registrations"] as List<Map<String, Any?>>).map { case ->
        DynamicTest.dynamicTest("registration: ${case["case"]}") {
            val input = case["input"] as Map<String, Any?>
            expect(case["error"] as String?) {
                Consul.validate(
                    input["name"] as String, (input["port"] as Double?)?.toInt(), input["address"] as String?,
                    (input["tags"] as List<String>?) ?: emptyList(), (input["meta"] as Map<String, String>?) ?: emptyMap(),
                    checks(input["checks"]), input["id"] as String?,
                )
            }
        }
    }

    @Suppress("UNCHECKED_CAST")
    @TestFactory
    fun options(): List<DynamicTest> = (table["options"] as List<Map<String, Any?>>).map { case ->
        DynamicTest.dynamicTest("option: ${case["case"]}") {
            val value = case["input"] as String
            expect(case["error"] as String?) {
                when (case["kind"]) {
                    "consistency" -> Consistency.parse(value)
                    "strategy" -> Strategy.parse(value)
                    "check" -> Check.parseKind(value)
                    else -> error("unknown option kind ${case["kind"]}")
                }
            }
        }
    }

    @Suppress("UNCHECKED_CAST")
    @TestFactory
    fun calls(): List<DynamicTest> = (table["calls"] as List<Map<String, Any?>>).map { case ->
        DynamicTest.dynamicTest("call: ${case["case"]}") {
            val a = case["args"] as Map<String, Any?>
            expect(case["error"] as String?) {
                when (case["call"]) {
                    "kv_get" -> client.kvGetBlocking(a["key"] as String)
                    "kv_put" -> client.kvPutBlocking(a["key"] as String, a["value"] as String)
                    "health_state" -> client.healthStateBlocking(a["state"] as String)
                    "lock" -> client.lockBlocking(a["key"] as String, ttl = Duration.ofMillis((a["ttl_ms"] as Double).toLong())).close()
                    "discover" -> client.discover(a["service"] as String).close()
                    "watch_key" -> client.watchKey(a["key"] as String).close()
                    "client" -> Client(a["address"] as String).close()
                    "register" -> client.registerBlocking(
                        a["name"] as String, port = (a["port"] as Double?)?.toInt(), checks = checks(a["checks"]),
                    ).close()
                    else -> error("unknown call ${case["call"]}")
                }
            }
        }
    }

    /** Odd values (control characters, huge and negative numbers, long strings) end in a ConsulException, never a crash. */
    @TestFactory
    fun oddInputNeverCrashes(): List<DynamicTest> {
        val odd = listOf("", "/", "\u0000", "a\u0000b", "ключ/🙂", "..", "a".repeat(70_000), "%zz", "a b\n", "?x=1#y")
        return odd.map { s ->
            DynamicTest.dynamicTest("odd input ${s.take(12).map { if (it.code < 32) '?' else it }.joinToString("")} (${s.length})") {
                fun tolerate(block: () -> Unit) {
                    try {
                        block()
                    } catch (_: ConsulException) {
                    }
                }
                tolerate { client.kvGetBlocking(s) }
                tolerate { client.kvPutBlocking(s, s, cas = -1L, flags = Long.MIN_VALUE) }
                tolerate { client.kvDeleteBlocking(s, recurse = true) }
                tolerate { client.healthStateBlocking(s) }
                tolerate { client.discover(s).use { it.pick(Strategy.CONSISTENT_HASH, s) } }
                tolerate { client.watchKey(s, wait = Duration.ofSeconds(1)).close() }
                tolerate { client.lockBlocking(s, ttl = Duration.ofSeconds(-1)).close() }
                tolerate { client.sessionCreateBlocking(s, ttl = Duration.ofDays(100_000), behavior = s) }
                tolerate { Client(s).close() }
                tolerate { Consul.validate(s, port = Int.MIN_VALUE, checks = listOf(Check(s, s, GoDuration.seconds(Double.NaN)))) }
                tolerate { Agent.start(AgentOptions().nodeName(s).bindAddr(s)).close() }
            }
        }
    }
}
