import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.ConsumerGroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * What a user of the Java client sees of a rebalance with the client's defaults
 * (heartbeat.interval.ms 3000, cooperative-sticky):
 *
 *   java -cp <kafka jars> GroupRebalanceLatency.java BOOTSTRAP METRICS_URL TOPIC GROUP MEMBERS PARTITIONS
 *
 * 1. MEMBERS consumers (threads) form a group over TOPIC; once it is Stable and every member's
 *    Heartbeat is held by the broker (its gauge sluice_group_heartbeats_held, read from
 *    METRICS_URL) one more member subscribes. Prints settle_ms: from that subscribe until every
 *    member owns a share (disjoint, covering every partition, counts within one),
 *    joiner_partitions, and double_owned: how many times a member was given a partition another
 *    member had not yet given up (its rebalance listener's view).
 * 2. Two more consumers in another group (heartbeat.interval.ms 6000: the broker holds each
 *    Heartbeat up to its 5 s cap) wait until both Heartbeats are held; then one commits
 *    (commit_ms: commitSync's duration) and the other closes (close_ms: close()'s duration).
 */
public class GroupRebalanceLatency {
    record Owned(Set<Integer> partitions, long changedAt) {}

    /** Partition → the member that owns it, from the members' rebalance listeners. */
    static final Map<Integer, Member> owners = new java.util.concurrent.ConcurrentHashMap<>();
    static final java.util.concurrent.atomic.AtomicInteger doubleOwned = new java.util.concurrent.atomic.AtomicInteger();

    static final class Member implements Runnable {
        final Properties config;
        final String topic;
        volatile Owned owned = new Owned(Set.of(), 0);
        volatile long subscribedAt;
        volatile boolean stop;
        volatile Throwable failure;
        final Thread thread = new Thread(this);

        Member(Properties config, String topic) {
            this.config = config;
            this.topic = topic;
        }

        void change(Collection<TopicPartition> parts, boolean add) {
            Set<Integer> next = new TreeSet<>(owned.partitions());
            for (TopicPartition tp : parts) {
                if (add) {
                    next.add(tp.partition());
                    Member before = owners.putIfAbsent(tp.partition(), this);
                    if (before != null && before != this) doubleOwned.incrementAndGet();
                } else {
                    next.remove(tp.partition());
                    owners.remove(tp.partition(), this);
                }
            }
            if (!next.equals(owned.partitions())) owned = new Owned(next, System.nanoTime());
        }

        public void run() {
            try (KafkaConsumer<byte[], byte[]> c =
                     new KafkaConsumer<>(config, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
                subscribedAt = System.nanoTime();
                c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(Collection<TopicPartition> parts) { change(parts, false); }
                    public void onPartitionsAssigned(Collection<TopicPartition> parts) { change(parts, true); }
                    public void onPartitionsLost(Collection<TopicPartition> parts) { change(parts, false); }
                });
                while (!stop) c.poll(Duration.ofMillis(50));
            } catch (Throwable t) {
                failure = t;
            }
        }
    }

    static Properties config(String bootstrap, String group) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
        return c;
    }

    /** The nanoTime of the last change once the members' partitions are settled, else -1. */
    static long settledAt(List<Member> members, int partitions) {
        Set<Integer> union = new HashSet<>();
        int total = 0, min = Integer.MAX_VALUE, max = 0;
        long last = 0;
        for (Member m : members) {
            if (m.failure != null) throw new RuntimeException("a member failed", m.failure);
            Owned o = m.owned;
            union.addAll(o.partitions());
            total += o.partitions().size();
            min = Math.min(min, o.partitions().size());
            max = Math.max(max, o.partitions().size());
            last = Math.max(last, o.changedAt());
        }
        boolean settled = total == partitions && union.size() == partitions && min > 0 && max - min <= 1;
        return settled ? last : -1;
    }

    static long awaitSettled(List<Member> members, int partitions) throws InterruptedException {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (System.nanoTime() < deadline) {
            long at = settledAt(members, partitions);
            if (at >= 0) return at;
            Thread.sleep(1);
        }
        throw new AssertionError("members did not settle within 60 s");
    }

    static final HttpClient http = HttpClient.newHttpClient();

    static long heldHeartbeats(String metricsUrl) throws Exception {
        String body = http.send(HttpRequest.newBuilder(URI.create(metricsUrl)).build(),
            HttpResponse.BodyHandlers.ofString()).body();
        for (String line : body.split("\n")) {
            if (line.startsWith("sluice_group_heartbeats_held ")) {
                return (long) Double.parseDouble(line.substring(line.indexOf(' ') + 1).trim());
            }
        }
        throw new AssertionError("no sluice_group_heartbeats_held in " + metricsUrl);
    }

    static void awaitHeld(String metricsUrl, long count) throws Exception {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (heldHeartbeats(metricsUrl) != count) {
            if (System.nanoTime() > deadline) throw new AssertionError("never " + count + " heartbeats held");
            Thread.sleep(20);
        }
    }

    static void awaitStable(Admin admin, String group, int members) throws Exception {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (System.nanoTime() < deadline) {
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            if (d.state() == ConsumerGroupState.STABLE && d.members().size() == members) return;
            Thread.sleep(20);
        }
        throw new AssertionError("group " + group + " never Stable with " + members + " members");
    }

    static double ms(long nanos) {
        return Math.round(nanos / 10_000.0) / 100.0;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], metricsUrl = args[1], topic = args[2], group = args[3];
        int size = Integer.parseInt(args[4]), partitions = Integer.parseInt(args[5]);
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();

            List<Member> members = new ArrayList<>();
            for (int i = 0; i < size; i++) {
                Member m = new Member(config(bootstrap, group), topic);
                members.add(m);
                m.thread.start();
            }
            awaitSettled(members, partitions);
            awaitStable(admin, group, size);
            awaitHeld(metricsUrl, size);

            Member joiner = new Member(config(bootstrap, group), topic);
            members.add(joiner);
            joiner.thread.start();
            long settled = awaitSettled(members, partitions);
            while (joiner.subscribedAt == 0) Thread.sleep(1);
            System.out.println("settle_ms=" + ms(settled - joiner.subscribedAt));
            System.out.println("joiner_partitions=" + joiner.owned.partitions().size());
            System.out.println("double_owned=" + doubleOwned.get());
            for (Member m : members) m.stop = true;
            for (Member m : members) m.thread.join(60_000);
            awaitHeld(metricsUrl, 0);
        }

        // A member whose Heartbeat is held commits; another closes.
        String other = group + "-commit";
        List<KafkaConsumer<byte[], byte[]>> pair = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            Properties c = config(bootstrap, other);
            c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "6000");
            KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer());
            consumer.subscribe(List.of(topic));
            pair.add(consumer);
        }
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (pair.get(0).assignment().size() + pair.get(1).assignment().size() != partitions
               || pair.get(0).assignment().isEmpty() || pair.get(1).assignment().isEmpty()) {
            if (System.nanoTime() > deadline) throw new AssertionError("the pair never split the partitions");
            for (KafkaConsumer<byte[], byte[]> c : pair) c.poll(Duration.ofMillis(50));
        }
        awaitHeld(metricsUrl, 2);
        KafkaConsumer<byte[], byte[]> committer = pair.get(0), closer = pair.get(1);
        TopicPartition tp = committer.assignment().iterator().next();
        long start = System.nanoTime();
        committer.commitSync(Map.of(tp, new OffsetAndMetadata(0)));
        System.out.println("commit_ms=" + ms(System.nanoTime() - start));
        start = System.nanoTime();
        closer.close();
        System.out.println("close_ms=" + ms(System.nanoTime() - start));
        committer.close();
    }
}
