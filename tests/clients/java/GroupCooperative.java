import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

/**
 * Three Java consumers with the cooperative-sticky assignor over a 12-partition topic: the
 * first owns everything, two more join (only moved partitions are revoked), then one leaves
 * (its partitions move, nobody else loses any). Args: bootstrap topic group.
 * Prints key=value lines for the test to check.
 */
public class GroupCooperative {
    static final Map<String, Set<Integer>> revoked = new HashMap<>();

    static KafkaConsumer<String, String> member(String bootstrap, String group, String topic, String name) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "300");
        c.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        c.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer());
        revoked.put(name, new TreeSet<>());
        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                for (TopicPartition tp : parts) revoked.get(name).add(tp.partition());
            }
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {}
        });
        return consumer;
    }

    static Set<Integer> owned(KafkaConsumer<String, String> c) {
        Set<Integer> out = new TreeSet<>();
        for (TopicPartition tp : c.assignment()) out.add(tp.partition());
        return out;
    }

    /** Polls until every consumer owns `each` partitions, disjoint, covering all 12. */
    static boolean settle(List<KafkaConsumer<String, String>> members, int each) {
        long deadline = System.currentTimeMillis() + 60000;
        while (System.currentTimeMillis() < deadline) {
            Set<Integer> union = new HashSet<>();
            int total = 0;
            boolean sized = true;
            for (KafkaConsumer<String, String> m : members) {
                m.poll(Duration.ofMillis(50));
                Set<Integer> o = owned(m);
                sized &= o.size() == each;
                total += o.size();
                union.addAll(o);
            }
            if (sized && total == 12 && union.size() == 12) return true;
        }
        return false;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, 12, (short) 1))).all().get();
        }
        KafkaConsumer<String, String> a = member(bootstrap, group, topic, "a");
        System.out.println("alone=" + settle(List.of(a), 12));
        Set<Integer> before = owned(a);
        KafkaConsumer<String, String> b = member(bootstrap, group, topic, "b");
        KafkaConsumer<String, String> c = member(bootstrap, group, topic, "c");
        System.out.println("three=" + settle(List.of(a, b, c), 4));
        Set<Integer> kept = owned(a);
        Set<Integer> moved = new TreeSet<>(before);
        moved.removeAll(kept);
        System.out.println("a_revoked_only_moved=" + revoked.get("a").equals(moved));
        revoked.get("a").clear();
        revoked.get("b").clear();
        Set<Integer> aBefore = owned(a), bBefore = owned(b);
        c.close();
        System.out.println("two=" + settle(List.of(a, b), 6));
        System.out.println("kept_on_leave=" + (owned(a).containsAll(aBefore) && owned(b).containsAll(bBefore)));
        System.out.println("revoked_on_leave=" + revoked.get("a").size() + "," + revoked.get("b").size());
        a.close();
        b.close();
    }
}
