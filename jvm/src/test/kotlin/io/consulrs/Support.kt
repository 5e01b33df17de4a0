package io.consulrs

import java.io.File
import java.nio.file.Files
import java.nio.file.Path
import java.time.Duration
import java.util.concurrent.TimeUnit

/** Shared helpers of the JVM suite. */
object Support {
    /** The test classpath, for the JVMs the tests start. */
    val classpath: String =
        System.getProperty("surefire.test.class.path")?.takeIf { it.isNotBlank() } ?: System.getProperty("java.class.path")

    /** The `java` of this JVM. */
    val java: String = Path.of(System.getProperty("java.home"), "bin", "java").toString()

    /** Starts `java -cp <test classpath> <main> <args>` in [dir] with [env] added. */
    fun spawnJava(main: String, args: List<String>, dir: File, env: Map<String, String> = emptyMap()): Process {
        val pb = ProcessBuilder(listOf(java, "-Xmx256m", "-cp", classpath, main) + args)
        pb.directory(dir)
        pb.environment().putAll(env)
        pb.redirectErrorStream(true)
        return pb.start()
    }

    /** Waits for [p] to end within [timeout]; kills it (and fails) otherwise. Returns its exit code. */
    fun waitFor(p: Process, timeout: Duration): Int {
        if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
            p.destroyForcibly().waitFor()
            throw AssertionError("process did not end within $timeout")
        }
        return p.exitValue()
    }

    /** Retries [cond] every 100 ms until it holds or [timeout] passes. */
    fun eventually(timeout: Duration = Duration.ofSeconds(20), what: String = "condition", cond: () -> Boolean) {
        val deadline = System.nanoTime() + timeout.toNanos()
        while (true) {
            if (runCatching(cond).getOrDefault(false)) return
            if (System.nanoTime() > deadline) throw AssertionError("$what did not hold within $timeout")
            Thread.sleep(100)
        }
    }

    /** A temporary directory removed by [deleteTree]. */
    fun tempDir(prefix: String): File = Files.createTempDirectory(prefix).toFile()

    /** Removes [dir] and everything in it. */
    fun deleteTree(dir: File) {
        dir.deleteRecursively()
    }

    /** Threads of this process (native ones included) whose name starts with [prefix], from /proc. */
    fun nativeThreads(prefix: String): List<String> =
        File("/proc/self/task").listFiles().orEmpty().mapNotNull { t ->
            runCatching { File(t, "comm").readText().trim() }.getOrNull()
        }.filter { it.startsWith(prefix) }

    /** JVM threads the binding started (`consul-rs-…`) that are still alive. */
    fun bindingThreads(): List<String> =
        Thread.getAllStackTraces().keys.filter { it.isAlive && it.name.startsWith("consul-rs-") && it.name != "consul-rs-cleaner" }.map { it.name }
}

/** A minimal JSON reader for the shared validation table (the suite takes no JSON dependency). */
class Json private constructor(private val s: String) {
    private var i = 0

    companion object {
        /** Parses [text]: maps, lists, strings, numbers (as Double), booleans and null. */
        fun parse(text: String): Any? = Json(text).run { value().also { ws(); require(i == s.length) { "trailing text at $i" } } }
    }

    private fun ws() {
        while (i < s.length && s[i].isWhitespace()) i++
    }

    private fun value(): Any? {
        ws()
        return when (val c = s[i]) {
            '{' -> obj()
            '[' -> arr()
            '"' -> str()
            't' -> lit("true", true)
            'f' -> lit("false", false)
            'n' -> lit("null", null)
            else -> if (c == '-' || c.isDigit()) num() else error("unexpected '$c' at $i")
        }
    }

    private fun lit(word: String, v: Any?): Any? {
        require(s.startsWith(word, i)) { "bad literal at $i" }
        i += word.length
        return v
    }

    private fun num(): Double {
        val start = i
        while (i < s.length && (s[i].isDigit() || s[i] in "+-.eE")) i++
        return s.substring(start, i).toDouble()
    }

    private fun str(): String {
        val sb = StringBuilder()
        i++
        while (s[i] != '"') {
            if (s[i] == '\\') {
                i++
                when (val e = s[i]) {
                    'n' -> sb.append('\n')
                    't' -> sb.append('\t')
                    'r' -> sb.append('\r')
                    'b' -> sb.append('\b')
                    'f' -> sb.append('\u000c')
                    'u' -> {
                        sb.append(s.substring(i + 1, i + 5).toInt(16).toChar())
                        i += 4
                    }
                    else -> sb.append(e)
                }
            } else {
                sb.append(s[i])
            }
            i++
        }
        i++
        return sb.toString()
    }

    private fun arr(): List<Any?> {
        val out = mutableListOf<Any?>()
        i++
        ws()
        if (s[i] == ']') {
            i++
            return out
        }
        while (true) {
            out.add(value())
            ws()
            if (s[i++] == ']') return out
        }
    }

    private fun obj(): Map<String, Any?> {
        val out = LinkedHashMap<String, Any?>()
        i++
        ws()
        if (s[i] == '}') {
            i++
            return out
        }
        while (true) {
            ws()
            val k = str()
            ws()
            i++ // ':'
            out[k] = value()
            ws()
            if (s[i++] == '}') return out
        }
    }
}
