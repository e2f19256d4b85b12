import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Rebalance time of a Java consumer group when one member joins a stable group.
 *
 *   java -cp <kafka jars> RebalanceBench.java BOOTSTRAP TOPIC PROTOCOL RUNS [PARTITIONS [MEMBERS [KEY=VALUE...]]]
 *
 * PROTOCOL: eager (RangeAssignor), cooperative (CooperativeStickyAssignor) or consumer
 * (group.protocol=consumer, KIP-848, the broker's default assignor). Every other consumer
 * setting is the client's default (heartbeat.interval.ms 3000, auto commit on, ...) unless a
 * KEY=VALUE argument overrides it.
 *
 * Each run uses a new group: MEMBERS consumers (threads) subscribe to TOPIC (created with
 * PARTITIONS partitions if missing) and the run waits until they settle and stay unchanged for a
 * second, then for a further random 0-5 s so the join falls at a random point of the members'
 * heartbeat cycles; then one more member subscribes. Settle time runs from that subscribe until
 * the last member's rebalance callback that leaves every member with partitions, no partition
 * owned twice, all PARTITIONS covered and the counts balanced (they differ by at most one).
 * Ownership is what the rebalance listener was told (revoked/lost remove, assigned adds).
 *
 * Prints one JSON line per run, then one summary line (median and max of the runs).
 */
public class RebalanceBench {
    /** One member's partitions and when they last changed (System.nanoTime). */
    record Owned(Set<Integer> partitions, long changedAt, int assignedCalls) {}

    static final class Member implements Runnable {
        final String name;
        final Properties config;
        final String topic;
        volatile Owned owned = new Owned(Set.of(), 0, 0);
        volatile long subscribedAt;
        volatile boolean stop;
        volatile Throwable failure;
        final Thread thread;

        Member(String name, Properties config, String topic) {
            this.name = name;
            this.config = config;
            this.topic = topic;
            this.thread = new Thread(this, name);
        }

        void change(Collection<TopicPartition> parts, boolean add) {
            Owned o = owned;
            Set<Integer> next = new TreeSet<>(o.partitions());
            for (TopicPartition tp : parts) {
                if (add) next.add(tp.partition());
                else next.remove(tp.partition());
            }
            // Callbacks with nothing to add or remove (cooperative rebalances call every
            // member) leave the time of the last change alone.
            long changedAt = next.equals(o.partitions()) ? o.changedAt() : System.nanoTime();
            owned = new Owned(Collections.unmodifiableSet(next), changedAt,
                o.assignedCalls() + (add && !parts.isEmpty() ? 1 : 0));
        }

        public void run() {
            try (KafkaConsumer<byte[], byte[]> consumer =
                     new KafkaConsumer<>(config, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                subscribedAt = System.nanoTime();
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(Collection<TopicPartition> parts) { change(parts, false); }
                    public void onPartitionsAssigned(Collection<TopicPartition> parts) { change(parts, true); }
                    public void onPartitionsLost(Collection<TopicPartition> parts) { change(parts, false); }
                });
                while (!stop) consumer.poll(Duration.ofMillis(50));
            } catch (Throwable t) {
                failure = t;
            }
        }
    }

    /** Whether the members' partitions are disjoint, cover all, and are balanced. */
    static boolean settled(List<Owned> owned, int partitions) {
        Set<Integer> union = new HashSet<>();
        int total = 0, min = Integer.MAX_VALUE, max = 0;
        for (Owned o : owned) {
            union.addAll(o.partitions());
            total += o.partitions().size();
            min = Math.min(min, o.partitions().size());
            max = Math.max(max, o.partitions().size());
        }
        return total == partitions && union.size() == partitions && min > 0 && max - min <= 1;
    }

    static List<Owned> snapshot(List<Member> members) {
        List<Owned> out = new ArrayList<>();
        for (Member m : members) out.add(m.owned);
        return out;
    }

    static void check(List<Member> members) {
        for (Member m : members) {
            if (m.failure != null) throw new RuntimeException(m.name + " failed", m.failure);
        }
    }

    /**
     * Waits until the members are settled; returns the nanoTime of the last change that made
     * them so, or -1 after the timeout.
     */
    static long awaitSettled(List<Member> members, int partitions, long timeoutMs) throws InterruptedException {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000;
        while (System.nanoTime() < deadline) {
            check(members);
            List<Owned> owned = snapshot(members);
            if (settled(owned, partitions)) {
                return owned.stream().mapToLong(Owned::changedAt).max().orElseThrow();
            }
            Thread.sleep(1);
        }
        return -1;
    }

    /** Whether no member's partitions change for `quietMs`. */
    static boolean quiet(List<Member> members, long quietMs) throws InterruptedException {
        List<Owned> before = snapshot(members);
        Thread.sleep(quietMs);
        check(members);
        return before.equals(snapshot(members));
    }

    /** Consumer settings given on the command line. */
    static final Properties overrides = new Properties();

    static Properties config(String bootstrap, String group, String protocol, String name) {
        Properties c = new Properties();
        c.putAll(overrides);
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
        switch (protocol) {
            case "eager" -> c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
            case "cooperative" -> c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                CooperativeStickyAssignor.class.getName());
            case "consumer" -> c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            default -> throw new IllegalArgumentException("protocol must be eager, cooperative or consumer: " + protocol);
        }
        return c;
    }

    static void createTopic(String bootstrap, String topic, int partitions) throws Exception {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) throw e;
        }
    }

    static double ms(long nanos) {
        return Math.round(nanos / 10_000.0) / 100.0;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: RebalanceBench BOOTSTRAP TOPIC eager|cooperative|consumer RUNS [PARTITIONS [MEMBERS [KEY=VALUE...]]]");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], protocol = args[2];
        int runs = Integer.parseInt(args[3]);
        int partitions = args.length > 4 ? Integer.parseInt(args[4]) : 100;
        int size = args.length > 5 ? Integer.parseInt(args[5]) : 10;
        for (int i = 6; i < args.length; i++) {
            String[] kv = args[i].split("=", 2);
            if (kv.length != 2) throw new IllegalArgumentException("expected KEY=VALUE: " + args[i]);
            overrides.put(kv[0], kv[1]);
        }
        config(bootstrap, "probe", protocol, "probe"); // validates the protocol name
        createTopic(bootstrap, topic, partitions);
        Random random = new Random(42);
        List<Double> settles = new ArrayList<>();
        int failed = 0;
        for (int run = 1; run <= runs; run++) {
            String group = "rebalance-bench-" + protocol + "-" + ProcessHandle.current().pid() + "-" + run;
            List<Member> members = new ArrayList<>();
            for (int i = 0; i < size; i++) {
                Member m = new Member("m" + i, config(bootstrap, group, protocol, "m" + i), topic);
                members.add(m);
                m.thread.start();
            }
            long formed = awaitSettled(members, partitions, 120_000);
            while (formed >= 0 && !quiet(members, 1000)) formed = awaitSettled(members, partitions, 120_000);
            if (formed < 0) throw new RuntimeException("the first " + size + " members never settled");
            Thread.sleep(random.nextInt(5000));

            Member joiner = new Member("m" + size, config(bootstrap, group, protocol, "m" + size), topic);
            members.add(joiner);
            joiner.thread.start();
            long settledAt = awaitSettled(members, partitions, 60_000);
            // Give the joiner's thread time to record subscribedAt if the check raced it.
            while (joiner.subscribedAt == 0) Thread.sleep(1);
            boolean stable = settledAt >= 0 && quiet(members, 1000);
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("protocol", protocol);
            line.put("run", run);
            line.put("members", members.size());
            line.put("partitions", partitions);
            if (settledAt >= 0) {
                double settle = ms(settledAt - joiner.subscribedAt);
                settles.add(settle);
                line.put("settle_ms", settle);
                line.put("stable_1s_after", stable);
                line.put("joiner_assigned_callbacks", joiner.owned.assignedCalls());
                int most = 0, fewest = Integer.MAX_VALUE;
                for (Owned o : snapshot(members)) {
                    most = Math.max(most, o.partitions().size());
                    fewest = Math.min(fewest, o.partitions().size());
                }
                line.put("partitions_per_member", fewest + "-" + most);
            } else {
                failed++;
                line.put("settle_ms", null);
                line.put("error", "not settled within 60 s");
            }
            System.out.println(json(line));
            System.out.flush();
            for (Member m : members) m.stop = true;
            for (Member m : members) m.thread.join(60_000);
        }
        Collections.sort(settles);
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("protocol", protocol);
        summary.put("summary", true);
        summary.put("runs", runs);
        summary.put("failed", failed);
        summary.put("median_ms", settles.isEmpty() ? null : median(settles));
        summary.put("min_ms", settles.isEmpty() ? null : settles.get(0));
        summary.put("max_ms", settles.isEmpty() ? null : settles.get(settles.size() - 1));
        System.out.println(json(summary));
        System.exit(failed == 0 ? 0 : 1);
    }

    static double median(List<Double> sorted) {
        int n = sorted.size();
        return n % 2 == 1 ? sorted.get(n / 2) : Math.round((sorted.get(n / 2 - 1) + sorted.get(n / 2)) * 50.0) / 100.0;
    }

    static String json(Map<String, Object> fields) {
        StringJoiner j = new StringJoiner(", ", "{", "}");
        for (Map.Entry<String, Object> e : fields.entrySet()) {
            Object v = e.getValue();
            String value = v == null ? "null"
                : v instanceof String s ? "\"" + s + "\""
                : v.toString();
            j.add("\"" + e.getKey() + "\": " + value);
        }
        return j.toString();
    }
}
