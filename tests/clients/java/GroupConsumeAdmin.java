import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

/**
 * A consumer group driven by the Java client and AdminClient: subscribe + commitSync, a second
 * member joins, list/describe the group, reset its offsets with alterConsumerGroupOffsets, a
 * new member resumes from the reset offsets, then the group is deleted.
 * Args: bootstrap topic group. Prints key=value lines for the test to check.
 */
public class GroupConsumeAdmin {
    static Properties consumerProps(String bootstrap, String group) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        return c;
    }

    static Map<Integer, Long> offsets(Map<TopicPartition, OffsetAndMetadata> m) {
        Map<Integer, Long> out = new TreeMap<>();
        m.forEach((tp, om) -> { if (om != null) out.put(tp.partition(), om.offset()); });
        return out;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
            try (Producer<String, String> p = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
                for (int i = 0; i < 60; i++) p.send(new ProducerRecord<>(topic, i % 3, null, "v" + i));
                p.flush();
            }
            List<TopicPartition> parts = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1), new TopicPartition(topic, 2));

            KafkaConsumer<String, String> c1 = new KafkaConsumer<>(consumerProps(bootstrap, group), new StringDeserializer(), new StringDeserializer());
            c1.subscribe(List.of(topic));
            int consumed = 0;
            long deadline = System.currentTimeMillis() + 60000;
            while (consumed < 60 && System.currentTimeMillis() < deadline) consumed += c1.poll(Duration.ofMillis(200)).count();
            c1.commitSync();
            System.out.println("consumed=" + consumed);
            System.out.println("committed=" + offsets(c1.committed(new HashSet<>(parts))));

            KafkaConsumer<String, String> c2 = new KafkaConsumer<>(consumerProps(bootstrap, group), new StringDeserializer(), new StringDeserializer());
            c2.subscribe(List.of(topic));
            deadline = System.currentTimeMillis() + 60000;
            boolean two = false;
            while (!two && System.currentTimeMillis() < deadline) {
                c1.poll(Duration.ofMillis(100));
                c2.poll(Duration.ofMillis(100));
                Set<TopicPartition> a1 = c1.assignment(), a2 = c2.assignment();
                two = !a1.isEmpty() && !a2.isEmpty() && a1.size() + a2.size() == 3 && Collections.disjoint(a1, a2);
            }
            System.out.println("two_members=" + two);

            boolean listed = admin.listConsumerGroups().all().get().stream().anyMatch(g -> g.groupId().equals(group));
            System.out.println("listed=" + listed);
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            System.out.println("describe_state=" + d.state());
            System.out.println("describe_members=" + d.members().size());
            try {
                admin.deleteConsumerGroups(List.of(group)).all().get();
                System.out.println("delete_nonempty=deleted");
            } catch (ExecutionException e) {
                System.out.println("delete_nonempty=" + e.getCause().getClass().getSimpleName());
            }
            try {
                admin.deleteConsumerGroupOffsets(group, Set.of(parts.get(2))).all().get();
                System.out.println("delete_offsets_subscribed=deleted");
            } catch (ExecutionException e) {
                System.out.println("delete_offsets_subscribed=" + e.getCause().getClass().getSimpleName());
            }
            c1.close();
            c2.close();

            System.out.println("offsets_before_reset=" + offsets(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()));
            Map<TopicPartition, OffsetAndMetadata> reset = new HashMap<>();
            reset.put(parts.get(0), new OffsetAndMetadata(5));
            reset.put(parts.get(1), new OffsetAndMetadata(0));
            admin.alterConsumerGroupOffsets(group, reset).all().get();
            System.out.println("offsets_after_reset=" + offsets(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()));

            Map<Integer, Long> firsts = new TreeMap<>();
            try (KafkaConsumer<String, String> c3 = new KafkaConsumer<>(consumerProps(bootstrap, group), new StringDeserializer(), new StringDeserializer())) {
                c3.subscribe(List.of(topic));
                deadline = System.currentTimeMillis() + 60000;
                while (firsts.size() < 2 && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : c3.poll(Duration.ofMillis(200))) firsts.putIfAbsent(r.partition(), r.offset());
                }
            }
            System.out.println("resumed_from=" + firsts);

            // Two groups in one OffsetFetch (v8) after batched FindCoordinator (v4) lookups.
            String other = group + "-other";
            admin.alterConsumerGroupOffsets(other, Map.of(parts.get(2), new OffsetAndMetadata(7, "m"))).all().get();
            Map<String, ListConsumerGroupOffsetsSpec> specs = new HashMap<>();
            specs.put(group, new ListConsumerGroupOffsetsSpec());
            specs.put(other, new ListConsumerGroupOffsetsSpec().topicPartitions(List.of(parts.get(2))));
            ListConsumerGroupOffsetsResult both = admin.listConsumerGroupOffsets(specs);
            System.out.println("multi_group=" + offsets(both.partitionsToOffsetAndMetadata(group).get()) + ";"
                + offsets(both.partitionsToOffsetAndMetadata(other).get()) + ";"
                + both.partitionsToOffsetAndMetadata(other).get().get(parts.get(2)).metadata());

            admin.deleteConsumerGroupOffsets(group, Set.of(parts.get(0))).all().get();
            System.out.println("after_offset_delete=" + offsets(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()));

            boolean deleted = false;
            deadline = System.currentTimeMillis() + 30000;
            while (!deleted && System.currentTimeMillis() < deadline) {
                try {
                    admin.deleteConsumerGroups(List.of(group)).all().get();
                    deleted = true;
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof org.apache.kafka.common.errors.GroupNotEmptyException)) throw e;
                    Thread.sleep(100);
                }
            }
            System.out.println("deleted=" + deleted);
            boolean after = admin.listConsumerGroups().all().get().stream().anyMatch(g -> g.groupId().equals(group));
            System.out.println("listed_after_delete=" + after);
        }
    }
}
