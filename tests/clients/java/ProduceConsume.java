import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.*;

/**
 * Creates a 4-partition topic with the AdminClient, produces N keyed records with headers,
 * then reads every partition from the start and checks order, offsets and headers.
 * Args: bootstrap topic count compression acks.
 */
public class ProduceConsume {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        int count = Integer.parseInt(args[2]);
        Properties admin = new Properties();
        admin.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin a = Admin.create(admin)) {
            a.createTopics(List.of(new NewTopic(topic, 4, (short) 1))).all().get();
        }
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, args[3]);
        p.put(ProducerConfig.ACKS_CONFIG, args[4]);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (Producer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < count; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(topic, "key-" + i, "value-" + i);
                r.headers().add("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                acks.add(producer.send(r));
            }
            producer.flush();
        }
        Map<Integer, List<Long>> sentOffsets = new HashMap<>();
        for (Future<RecordMetadata> f : acks) {
            RecordMetadata m = f.get();
            sentOffsets.computeIfAbsent(m.partition(), k -> new ArrayList<>()).add(m.offset());
        }
        System.out.println("acked=" + acks.size());

        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        try (Consumer<String, String> consumer = new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
            List<TopicPartition> parts = new ArrayList<>();
            for (int i = 0; i < 4; i++) parts.add(new TopicPartition(topic, i));
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            Map<Integer, Long> next = new HashMap<>();
            int consumed = 0;
            boolean inOrder = true, headersOk = true;
            long deadline = System.currentTimeMillis() + 60000;
            while (consumed < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    long expected = next.getOrDefault(r.partition(), 0L);
                    if (r.offset() != expected) inOrder = false;
                    next.put(r.partition(), r.offset() + 1);
                    int seq = Integer.parseInt(r.value().substring("value-".length()));
                    Header h = r.headers().lastHeader("seq");
                    if (h == null || !new String(h.value(), StandardCharsets.UTF_8).equals(Integer.toString(seq))
                            || !r.key().equals("key-" + seq)) headersOk = false;
                    consumed++;
                }
            }
            for (Map.Entry<Integer, List<Long>> e : sentOffsets.entrySet()) {
                List<Long> offs = e.getValue();
                for (int i = 0; i < offs.size(); i++) if (offs.get(i) != i) inOrder = false;
            }
            System.out.println("consumed=" + consumed);
            System.out.println("inOrder=" + inOrder);
            System.out.println("headersOk=" + headersOk);
        }
    }
}
