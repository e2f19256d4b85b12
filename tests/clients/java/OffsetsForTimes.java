import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

/** Produces 10 records one second apart (one batch each) and looks them up by time. Args: bootstrap topic base-timestamp. */
public class OffsetsForTimes {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        long base = Long.parseLong(args[2]);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        try (Producer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < 10; i++) producer.send(new ProducerRecord<>(topic, 0, base + i * 1000L, null, "v" + i)).get();
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Consumer<String, String> consumer = new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
            OffsetAndTimestamp found = consumer.offsetsForTimes(Map.of(tp, base + 4500)).get(tp);
            System.out.println("forTime=" + found.offset() + "@" + (found.timestamp() - base));
            System.out.println("tooLate=" + consumer.offsetsForTimes(Map.of(tp, base + 100_000)).get(tp));
            consumer.assign(List.of(tp));
            consumer.seek(tp, found.offset());
            ConsumerRecords<String, String> records = ConsumerRecords.empty();
            long deadline = System.currentTimeMillis() + 15000;
            while (records.isEmpty() && System.currentTimeMillis() < deadline) records = consumer.poll(Duration.ofMillis(200));
            System.out.println("afterSeek=" + records.iterator().next().value());
        }
        Properties a = new Properties();
        a.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(a)) {
            ListOffsetsResult.ListOffsetsResultInfo max = admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).all().get().get(tp);
            System.out.println("maxTimestamp=" + max.offset() + "@" + (max.timestamp() - base));
        }
    }
}
