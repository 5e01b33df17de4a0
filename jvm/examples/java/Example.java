// consul-rs from Java: an embedded agent, KV with CAS, self-registration with a TTL check,
// discovery, a lock and a watch callback, each handle closed by try-with-resources.
// Compiled and run by the JVM suite (JavaExampleTest); build with the consul-rs jar on the classpath.

import io.consulrs.Agent;
import io.consulrs.AgentOptions;
import io.consulrs.Check;
import io.consulrs.Client;
import io.consulrs.ConsulException;
import io.consulrs.Discovery;
import io.consulrs.InvalidArgumentException;
import io.consulrs.KvPair;
import io.consulrs.Lock;
import io.consulrs.Registration;
import io.consulrs.ServiceEntry;
import io.consulrs.Strategy;
import io.consulrs.Subscription;
import io.consulrs.Watch;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

public final class Example {
    private Example() {}

    public static void main(String[] args) throws Exception {
        try (Agent agent = Agent.start(new AgentOptions().nodeName("java-example"));
             Client client = agent.client()) {
            // KV with check-and-set: 0 means "only if absent".
            client.kvPutBlocking("config/color", "blue", 0L, null);
            KvPair pair = client.kvGetBlocking("config/color");
            boolean swapped = client.kvPutBlocking("config/color", "green", pair.getModifyIndex(), null);
            System.out.println("cas: " + swapped + ", now " + client.kvGetBlocking("config/color").valueString());

            // Every binding refuses a bad value before sending it, with the same message.
            try {
                client.kvGetBlocking("");
            } catch (InvalidArgumentException e) {
                System.out.println("refused: " + e.getMessage() + " (" + e.getCode() + ")");
            }

            // Register with a TTL check the library keeps passing; discover and pick an instance.
            try (Registration reg = client.registerBlocking("java-web", 8080, null, List.of("v1"), java.util.Map.of(),
                     List.of(Check.ttl(Duration.ofSeconds(10))), null);
                 Discovery web = client.discover("java-web")) {
                web.readyBlocking(Duration.ofSeconds(10));
                ServiceEntry picked = null;
                for (int i = 0; i < 100 && picked == null; i++) {
                    picked = web.pick(Strategy.ROUND_ROBIN, null);
                    if (picked == null) Thread.sleep(100);
                }
                System.out.println("picked " + picked.getServiceId() + " at " + picked.getAddress() + ":" + picked.getPort()
                    + " (" + reg.getCheckIds() + ")");
            }

            // A watch with a callback on its own thread; closing the subscription stops it.
            LinkedBlockingQueue<String> seen = new LinkedBlockingQueue<>();
            Watch watch = client.watchKey("config/color");
            try (Subscription sub = watch.subscribe(ev -> seen.add(ev.getPair().valueString()))) {
                System.out.println("watch: " + seen.poll(20, TimeUnit.SECONDS));
                client.kvPutBlocking("config/color", "red");
                System.out.println("watch: " + seen.poll(20, TimeUnit.SECONDS));
            }

            // A lock, released at the end of the block.
            try (Lock lock = client.lockBlocking("locks/java-example")) {
                System.out.println("lock held: " + lock.isHeld());
            }
        } catch (ConsulException e) {
            System.out.println("failed: " + e.getCode() + ": " + e.getMessage());
            System.exit(1);
        }
        System.out.println("example ok");
    }
}
