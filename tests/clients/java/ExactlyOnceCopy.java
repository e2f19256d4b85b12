import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

/**
 * A consume-transform-produce processor, written as the Kafka documentation describes one: each
 * polled batch of the input topic is copied ("copy-" + value, same partition) to the output topic
 * in one transaction together with the group's offsets (sendOffsetsToTransaction). On any error
 * it drops its producer and consumer and starts over from the group's committed offsets, as a
 * restarted instance would; initTransactions fences and aborts what a previous instance left
 * open. Static membership lets a restarted instance take its place in the group at once.
 * Args: bootstrap input output group transactionalId seconds.
 * Prints "position=N" (records committed so far: the sum of the group's offsets) after each
 * commit, "restart=<exception>" after each error, and "done" once the group's offsets reach the
 * end of the input (written beforehand); exits 1 if that does not happen within `seconds`.
 */
public class ExactlyOnceCopy {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], input = args[1], output = args[2], group = args[3], txnId = args[4];
        long deadline = System.currentTimeMillis() + Long.parseLong(args[5]) * 1000;

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        pp.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "10000");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "10000");
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "10000");

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        cp.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, txnId + "-member");
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "20");
        cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        cp.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        cp.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");

        while (System.currentTimeMillis() < deadline) {
            KafkaProducer<String, String> producer = null;
            KafkaConsumer<String, String> consumer = null;
            try {
                producer = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer());
                producer.initTransactions();
                consumer = new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer());
                consumer.subscribe(List.of(input));
                List<TopicPartition> inputs = new ArrayList<>();
                consumer.partitionsFor(input).forEach(p -> inputs.add(new TopicPartition(input, p.partition())));
                Map<TopicPartition, Long> ends = consumer.endOffsets(inputs);
                while (System.currentTimeMillis() < deadline) {
                    ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                    if (records.isEmpty()) {
                        // Everything polled so far is committed, so positions are the group's offsets.
                        if (consumer.assignment().size() == inputs.size() && reached(consumer, ends)) {
                            System.out.println("done");
                            producer.close(Duration.ofSeconds(5));
                            consumer.close(Duration.ofSeconds(5));
                            return;
                        }
                        continue;
                    }
                    producer.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                    for (ConsumerRecord<String, String> r : records) {
                        producer.send(new ProducerRecord<>(output, r.partition(), r.key(), "copy-" + r.value()));
                        offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                    producer.commitTransaction();
                    long position = 0;
                    for (TopicPartition p : consumer.assignment()) position += consumer.position(p);
                    System.out.println("position=" + position);
                }
            } catch (Exception e) {
                System.out.println("restart=" + e.toString().replace('\n', ' '));
                if (producer != null) producer.close(Duration.ofSeconds(2));
                if (consumer != null) consumer.close(Duration.ofSeconds(2));
            }
        }
        System.out.println("timeout");
        System.exit(1);
    }

    static boolean reached(KafkaConsumer<String, String> consumer, Map<TopicPartition, Long> ends) {
        for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
            if (consumer.position(e.getKey()) < e.getValue()) return false;
        }
        return true;
    }
}
