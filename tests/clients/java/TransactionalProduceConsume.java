import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

/**
 * Transactions with the Java client, step by step:
 * 1. three transactions over two topics (A: 3 partitions, B: 2): commit, abort, commit; both
 *    isolation levels read everything back;
 * 2. a transaction left open: end offsets (LSO vs high watermark) and what read_committed reads;
 * 3. a second producer with the same transactional.id fences the first, whose commit fails and
 *    whose open transaction is aborted; the new producer commits;
 * 4. consume-transform-produce: sendOffsetsToTransaction with the consumer's group metadata; the
 *    group's offsets as the AdminClient sees them while open, after commit, after an abort; a new
 *    member of the group resumes from the committed offsets.
 * Record layout of a transaction (shared with test_transactions.py): record i of a transaction
 * tagged T is "T-i", sent to A if i is even, else B, partition (i / 2) % partitions.
 * Args: bootstrap prefix. Prints key=value lines; read results as offset:value lists.
 */
public class TransactionalProduceConsume {
    static final long WAIT_MS = 30000;
    static String bootstrap, a, b, in, out, txnId, group;

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        String prefix = args[1];
        a = prefix + "-a";
        b = prefix + "-b";
        in = prefix + "-in";
        out = prefix + "-out";
        txnId = prefix + "-txn";
        group = prefix + "-group";
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(a, 3, (short) 1), new NewTopic(b, 2, (short) 1),
                new NewTopic(in, 2, (short) 1), new NewTopic(out, 1, (short) 1))).all().get();
            List<TopicPartition> ab = List.of(tp(a, 0), tp(a, 1), tp(a, 2), tp(b, 0), tp(b, 1));

            // 1. commit, abort, commit.
            KafkaProducer<String, String> first = txnProducer();
            transaction(first, "c1", 20, true);
            transaction(first, "ab", 10, false);
            transaction(first, "c3", 10, true);
            Map<TopicPartition, Long> hw = settledEnds(ab);
            print("hw", hw);
            print("uncommitted", read("read_uncommitted", hw));
            // Up to the high watermark: every transaction must be decided, markers written.
            print("committed", read("read_committed", hw));

            // 2. An open transaction on A-0, then end offsets by isolation level.
            first.beginTransaction();
            List<Future<RecordMetadata>> open = new ArrayList<>();
            for (int i = 0; i < 3; i++) open.add(first.send(new ProducerRecord<>(a, 0, null, "open-" + i)));
            first.flush();
            System.out.println("open_offsets=" + offsetsOf(open));
            Map<TopicPartition, Long> lso = endOffsets("read_committed", List.of(tp(a, 0)));
            System.out.println("open_end_read_committed=" + lso.get(tp(a, 0)));
            System.out.println("open_end_read_uncommitted=" + endOffsets("read_uncommitted", List.of(tp(a, 0))).get(tp(a, 0)));
            print("open_read_committed", read("read_committed", lso));
            // What the AdminClient tells about it (KIP-664: ListTransactions, DescribeTransactions).
            String listed = "missing";
            for (TransactionListing t : admin.listTransactions().all().get()) {
                if (t.transactionalId().equals(txnId)) listed = t.state().toString();
            }
            System.out.println("open_listed=" + listed);
            TransactionDescription d = admin.describeTransactions(List.of(txnId)).description(txnId).get();
            System.out.println("open_described=" + d.state() + ";" + d.topicPartitions() + ";timeout=" + d.transactionTimeoutMs());

            // 3. A second producer with the same transactional.id fences the first.
            KafkaProducer<String, String> second = txnProducer();
            try {
                first.commitTransaction();
                System.out.println("fenced_commit=committed");
            } catch (Exception e) {
                System.out.println("fenced_commit=" + e.getClass().getSimpleName());
            }
            first.close(Duration.ofSeconds(5));
            Map<TopicPartition, Long> a0 = settledEnds(List.of(tp(a, 0)));
            System.out.println("fenced_end=" + a0.get(tp(a, 0)));
            print("fenced_read_committed", read("read_committed", a0));
            second.beginTransaction();
            for (int i = 0; i < 2; i++) second.send(new ProducerRecord<>(a, 0, null, "c5-" + i));
            second.commitTransaction();
            a0 = settledEnds(List.of(tp(a, 0)));
            print("after_fence_read_committed", read("read_committed", a0));

            // 4. Consume-transform-produce.
            consumeTransformProduce(admin, second);
            second.close(Duration.ofSeconds(5));
        }
    }

    static void consumeTransformProduce(Admin admin, KafkaProducer<String, String> producer) throws Exception {
        plainProduce(in, 0, 10);
        List<TopicPartition> inputs = List.of(tp(in, 0), tp(in, 1));
        try (KafkaConsumer<String, String> consumer = groupConsumer()) {
            consumer.subscribe(List.of(in));
            List<String> batch = pollValues(consumer, 10);
            producer.beginTransaction();
            for (String v : batch) producer.send(new ProducerRecord<>(out, 0, null, "T-" + v));
            producer.sendOffsetsToTransaction(positions(consumer, inputs), consumer.groupMetadata());
            producer.flush();
            System.out.println("group_offsets_while_open=" + groupOffsets(admin));
            producer.commitTransaction();
            // The offsets reach __consumer_offsets with the commit markers, just after EndTxn.
            String committed = waitGroupOffsets(admin, "{0=5, 1=5}");
            System.out.println("group_offsets_committed=" + committed);

            plainProduce(in, 10, 6);
            batch = pollValues(consumer, 6);
            producer.beginTransaction();
            for (String v : batch) producer.send(new ProducerRecord<>(out, 0, null, "T-" + v));
            producer.sendOffsetsToTransaction(positions(consumer, inputs), consumer.groupMetadata());
            producer.flush();
            producer.abortTransaction();
            Map<TopicPartition, Long> outEnd = settledEnds(List.of(tp(out, 0)));
            System.out.println("out_end=" + outEnd.get(tp(out, 0)));
            print("out_read_committed", read("read_committed", outEnd));
            System.out.println("group_offsets_after_abort=" + groupOffsets(admin));
        }
        // A new member of the group starts where the committed transaction left the offsets.
        try (KafkaConsumer<String, String> consumer = groupConsumer()) {
            consumer.subscribe(List.of(in));
            System.out.println("resumed=" + String.join(",", pollValues(consumer, 6)));
        }
    }

    static TopicPartition tp(String topic, int partition) {
        return new TopicPartition(topic, partition);
    }

    static KafkaProducer<String, String> txnProducer() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        // initTransactions, commit and abort give up after this instead of blocking for a minute.
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
        KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
        producer.initTransactions();
        return producer;
    }

    /**
     * One transaction of n records in the shared layout, committed or aborted. Flushed first:
     * abortTransaction drops records not sent yet, and the test expects all of them in the log.
     */
    static void transaction(KafkaProducer<String, String> producer, String tag, int n, boolean commit) {
        producer.beginTransaction();
        for (int i = 0; i < n; i++) {
            String topic = i % 2 == 0 ? a : b;
            int partitions = i % 2 == 0 ? 3 : 2;
            producer.send(new ProducerRecord<>(topic, (i / 2) % partitions, null, tag + "-" + i));
        }
        producer.flush();
        if (commit) producer.commitTransaction();
        else producer.abortTransaction();
    }

    static void plainProduce(String topic, int from, int n) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = from; i < from + n; i++) producer.send(new ProducerRecord<>(topic, i % 2, null, "in-" + i)).get();
        }
    }

    static KafkaConsumer<String, String> reader(String isolation) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        c.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        return new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer());
    }

    static KafkaConsumer<String, String> groupConsumer() {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        c.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        return new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer());
    }

    /** End offsets as a consumer of this isolation level sees them (the LSO under read_committed). */
    static Map<TopicPartition, Long> endOffsets(String isolation, List<TopicPartition> parts) {
        try (KafkaConsumer<String, String> c = reader(isolation)) {
            Map<TopicPartition, Long> ends = c.endOffsets(parts, Duration.ofSeconds(20));
            Map<TopicPartition, Long> ordered = new LinkedHashMap<>();
            for (TopicPartition p : parts) ordered.put(p, ends.get(p));
            return ordered;
        }
    }

    /**
     * End offsets once no transaction is pending on these partitions: the LSO has caught up with
     * the high watermark (EndTxn may be answered before the markers are written, as in Kafka).
     */
    static Map<TopicPartition, Long> settledEnds(List<TopicPartition> parts) throws Exception {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        Map<TopicPartition, Long> hw = endOffsets("read_uncommitted", parts);
        while (!endOffsets("read_committed", parts).equals(hw) && System.currentTimeMillis() < deadline) {
            Thread.sleep(50);
            hw = endOffsets("read_uncommitted", parts);
        }
        return hw;
    }

    /**
     * Reads each partition from its start until the consumer's position reaches the given end;
     * "topic-partition" -> "offset:value" list. A read_committed consumer passes an offset only
     * once the transactions below it are decided.
     */
    static Map<String, List<String>> read(String isolation, Map<TopicPartition, Long> ends) {
        Map<String, List<String>> got = new TreeMap<>();
        List<TopicPartition> parts = new ArrayList<>(ends.keySet());
        for (TopicPartition p : parts) got.put(p.toString(), new ArrayList<>());
        try (KafkaConsumer<String, String> c = reader(isolation)) {
            c.assign(parts);
            c.seekToBeginning(parts);
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (System.currentTimeMillis() < deadline) {
                boolean reached = true;
                for (TopicPartition p : parts) reached &= c.position(p) >= ends.get(p);
                if (reached) return got;
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    got.get(new TopicPartition(r.topic(), r.partition()).toString()).add(r.offset() + ":" + r.value());
                }
            }
            Map<String, Long> at = new TreeMap<>();
            for (TopicPartition p : parts) at.put(p.toString(), c.position(p));
            got.put("timeout", List.of("positions " + at + " never reached " + ends));
            return got;
        }
    }

    static List<String> pollValues(KafkaConsumer<String, String> consumer, int n) {
        List<String> values = new ArrayList<>();
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (values.size() < n && System.currentTimeMillis() < deadline) {
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) values.add(r.value());
        }
        return values;
    }

    static Map<TopicPartition, OffsetAndMetadata> positions(KafkaConsumer<String, String> consumer, List<TopicPartition> parts) {
        Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
        for (TopicPartition p : parts) out.put(p, new OffsetAndMetadata(consumer.position(p)));
        return out;
    }

    static String groupOffsets(Admin admin) throws Exception {
        Map<Integer, Long> m = new TreeMap<>();
        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()
            .forEach((p, om) -> { if (om != null) m.put(p.partition(), om.offset()); });
        return m.toString();
    }

    static String waitGroupOffsets(Admin admin, String expected) throws Exception {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        String seen = groupOffsets(admin);
        while (!seen.equals(expected) && System.currentTimeMillis() < deadline) {
            Thread.sleep(50);
            seen = groupOffsets(admin);
        }
        return seen;
    }

    static String offsetsOf(List<Future<RecordMetadata>> sent) throws Exception {
        List<String> offsets = new ArrayList<>();
        for (Future<RecordMetadata> f : sent) offsets.add(Long.toString(f.get().offset()));
        return String.join(",", offsets);
    }

    static void print(String key, Map<?, ?> m) {
        for (Map.Entry<?, ?> e : m.entrySet()) {
            Object v = e.getValue();
            String text = v instanceof List<?> l ? String.join(",", l.stream().map(Object::toString).toList()) : v.toString();
            System.out.println(key + "." + e.getKey() + "=" + text);
        }
    }
}
