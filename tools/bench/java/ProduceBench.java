import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Produce throughput of one Java producer (kafka-clients, its defaults unless overridden).
 *
 *   java -cp <kafka jars> ProduceBench.java BOOTSTRAP TOPIC PARTITIONS RECORDS SIZE [KEY=VALUE...]
 *
 * Creates TOPIC with PARTITIONS partitions if missing, sends RECORDS values of SIZE bytes
 * (no keys, so the client's sticky partitioner spreads batches over the partitions) as fast as
 * the producer takes them, then flushes. KEY=VALUE arguments are producer settings, e.g.
 * enable.idempotence=false or acks=1. Every send must be acknowledged without error, or the run
 * fails. Prints one JSON line: records/s and MiB/s from the first send to the last
 * acknowledgement, send-to-ack latency percentiles, and the settings that matter.
 */
public class ProduceBench {
    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: ProduceBench BOOTSTRAP TOPIC PARTITIONS RECORDS SIZE [KEY=VALUE...]");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = Integer.parseInt(args[2]);
        long records = Long.parseLong(args[3]);
        int size = Integer.parseInt(args[4]);

        Properties admin = new Properties();
        admin.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin a = Admin.create(admin)) {
            a.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) throw e;
        }

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        byte[] value = new byte[size];
        new Random(42).nextBytes(value);
        long[] latencyMicros = new long[(int) Math.min(records, 1_000_000)];
        AtomicLong acked = new AtomicLong();
        AtomicLong lastAck = new AtomicLong();
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            // The first send waits for metadata; warm up on it so the clock measures produce.
            producer.partitionsFor(topic);
            long start = System.nanoTime();
            for (long i = 0; i < records && failure.get() == null; i++) {
                long sent = System.nanoTime();
                int slot = (int) (i % latencyMicros.length);
                producer.send(new ProducerRecord<>(topic, value), (md, e) -> {
                    long now = System.nanoTime();
                    if (e != null) {
                        failure.compareAndSet(null, e);
                        return;
                    }
                    latencyMicros[slot] = (now - sent) / 1000;
                    acked.incrementAndGet();
                    lastAck.set(now);
                });
            }
            producer.flush();
            if (failure.get() != null) throw failure.get();
            if (acked.get() != records) {
                throw new IllegalStateException("acknowledged " + acked.get() + " of " + records);
            }
            double seconds = (lastAck.get() - start) / 1e9;
            long[] sorted = latencyMicros.clone();
            Arrays.sort(sorted);
            System.out.printf(Locale.ROOT,
                "{\"topic\":\"%s\",\"records\":%d,\"size\":%d,\"partitions\":%d,"
                    + "\"idempotence\":\"%s\",\"acks\":\"%s\",\"max_in_flight\":\"%s\","
                    + "\"seconds\":%.3f,\"records_per_sec\":%.1f,\"mib_per_sec\":%.2f,"
                    + "\"latency_ms\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},\"load\":\"%s\"}%n",
                topic, records, size, partitions,
                p.getOrDefault("enable.idempotence", "true (default)"),
                p.getOrDefault("acks", "all (default)"),
                p.getOrDefault("max.in.flight.requests.per.connection", "5 (default)"),
                seconds, records / seconds, records * (double) size / seconds / (1 << 20),
                sorted[sorted.length / 2] / 1000.0, sorted[(int) (sorted.length * 0.99)] / 1000.0,
                sorted[sorted.length - 1] / 1000.0, loadAverage());
        }
    }

    static String loadAverage() {
        try {
            return new String(java.nio.file.Files.readAllBytes(java.nio.file.Path.of("/proc/loadavg"))).trim();
        } catch (Exception e) {
            return "";
        }
    }
}
