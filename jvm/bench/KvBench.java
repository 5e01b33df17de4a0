// KV loops of bench/c_bench.c and bench/python_bench.py from the JVM binding: keys cbench/0..999,
// 128-byte values, closed loop, N seconds per row; one thread, then N threads sharing one Client
// (blocking twins, as C's threads share one consul_client). Run by bench/jvm_bench.sh.
//
//   java -cp <consul-rs jar and its dependencies>:. KvBench <host:port> [seconds] [threads]

import io.consulrs.Client;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;

public final class KvBench {
    private KvBench() {}

    private static final byte[] VALUE = "v".repeat(128).getBytes();
    private static final String[] KEYS = new String[1000];

    static {
        for (int i = 0; i < KEYS.length; i++) KEYS[i] = "cbench/" + i;
    }

    private static void row(String name, long[] lat, int n, double elapsed) {
        long[] l = Arrays.copyOf(lat, n);
        Arrays.sort(l);
        System.out.printf("%-26s %9.0f %8.2f %8.2f%n", name, n / elapsed, l[n / 2] / 1e6, l[(int) (n * 0.99)] / 1e6);
    }

    private static void run(String name, int threads, double secs, Consumer<String> op) throws InterruptedException {
        List<long[]> lats = new ArrayList<>();
        int[] counts = new int[threads];
        long start = System.nanoTime();
        long end = start + (long) (secs * 1e9);
        List<Thread> ts = new ArrayList<>();
        for (int w = 0; w < threads; w++) {
            long[] lat = new long[4_000_000 / threads];
            lats.add(lat);
            final int worker = w;
            Thread t = new Thread(() -> {
                int i = worker;
                int n = 0;
                long now;
                while ((now = System.nanoTime()) < end && n < lat.length) {
                    op.accept(KEYS[i % KEYS.length]);
                    lat[n++] = System.nanoTime() - now;
                    i += threads;
                }
                counts[worker] = n;
            });
            ts.add(t);
            t.start();
        }
        for (Thread t : ts) t.join();
        double elapsed = (System.nanoTime() - start) / 1e9;
        int total = Arrays.stream(counts).sum();
        long[] all = new long[total];
        int k = 0;
        for (int w = 0; w < threads; w++) {
            System.arraycopy(lats.get(w), 0, all, k, counts[w]);
            k += counts[w];
        }
        row(name, all, total, elapsed);
    }

    public static void main(String[] args) throws Exception {
        String addr = args[0];
        double secs = args.length > 1 ? Double.parseDouble(args[1]) : 5;
        int threads = args.length > 2 ? Integer.parseInt(args[2]) : 16;
        try (Client c = new Client(addr)) {
            // Warm-up: JIT, connection pool, the keys present.
            for (String k : KEYS) c.kvPutBlocking(k, VALUE);
            for (String k : KEYS) c.kvGetBlocking(k);
            System.out.printf("%-26s %9s %8s %8s%n", "run (consul-rs, JVM)", "ops/s", "p50 ms", "p99 ms");
            run("jvm PUT 1 thread", 1, secs, k -> c.kvPutBlocking(k, VALUE));
            run("jvm GET 1 thread", 1, secs, c::kvGetBlocking);
            run("jvm PUT " + threads + " threads", threads, secs, k -> c.kvPutBlocking(k, VALUE));
            run("jvm GET " + threads + " threads", threads, secs, c::kvGetBlocking);
        }
    }
}
