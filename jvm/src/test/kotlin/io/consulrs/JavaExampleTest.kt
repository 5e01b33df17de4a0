package io.consulrs

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.io.File
import java.time.Duration
import javax.tools.ToolProvider

/** The Java example (jvm/examples/java) compiles with javac against the library and runs. */
class JavaExampleTest {
    @Test
    fun `the Java example compiles and runs`() {
        val src = File(System.getProperty("consulrs.examplesDir"), "Example.java")
        val dir = Support.tempDir("consul-rs-java-example-")
        try {
            val javac = ToolProvider.getSystemJavaCompiler() ?: error("no system Java compiler (a JDK is needed)")
            val err = java.io.ByteArrayOutputStream()
            val rc = javac.run(null, null, err, "-cp", Support.classpath, "-d", dir.path, src.path)
            assertEquals(0, rc, "javac:\n$err")
            val p = ProcessBuilder(Support.java, "-cp", dir.path + File.pathSeparator + Support.classpath, "Example")
                .directory(dir).redirectErrorStream(true).start()
            val out = p.inputStream.bufferedReader().readText()
            assertEquals(0, Support.waitFor(p, Duration.ofSeconds(60)), out)
            assertTrue(out.trim().endsWith("example ok"), out)
        } finally {
            Support.deleteTree(dir)
        }
    }
}
