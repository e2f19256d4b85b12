import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * One Java consumer with group.protocol=consumer (KIP-848), driven over stdin by the test.
 * Args: bootstrap group topic name [server-assignor].
 *
 * Prints one event per line:
 *   revoked P,P,...   the rebalance listener revoked these partitions
 *   assigned P,P,...  the rebalance listener added these partitions
 *   owned P,P,... epoch E   the whole assignment whenever it changed, and the member epoch
 *   record P OFFSET VALUE
 *   committed P=OFFSET,...
 *   closed
 * Commands on stdin: "commit" (commitSync of what was consumed), "close".
 */
public class ConsumerProtocolMember {
    static String partitions(Collection<TopicPartition> parts) {
        StringJoiner j = new StringJoiner(",");
        parts.stream().map(TopicPartition::partition).sorted().forEach(p -> j.add(String.valueOf(p)));
        return j.toString();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], group = args[1], topic = args[2], name = args[3];
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
        c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        if (args.length > 4) c.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, args[4]);
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        KafkaConsumer<String, String> consumer =
            new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer());

        ConcurrentLinkedQueue<String> commands = new ConcurrentLinkedQueue<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in))) {
                String line;
                while ((line = in.readLine()) != null) commands.add(line.trim());
            } catch (Exception e) {
                // stdin closed: the test went away
            }
            commands.add("close");
        });
        reader.setDaemon(true);
        reader.start();

        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                if (!parts.isEmpty()) System.out.println("revoked " + partitions(parts));
            }
            public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                if (!parts.isEmpty()) System.out.println("assigned " + partitions(parts));
            }
            public void onPartitionsLost(Collection<TopicPartition> parts) {
                if (!parts.isEmpty()) System.out.println("lost " + partitions(parts));
            }
        });
        String reported = null;
        while (true) {
            String owned = partitions(consumer.assignment());
            if (!owned.equals(reported)) {
                System.out.println("owned " + owned + " epoch " + consumer.groupMetadata().generationId());
                reported = owned;
            }
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(100))) {
                System.out.println("record " + r.partition() + " " + r.offset() + " " + r.value());
            }
            System.out.flush();
            String command;
            while ((command = commands.poll()) != null) {
                if (command.equals("commit")) {
                    consumer.commitSync();
                    Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(consumer.assignment());
                    StringJoiner j = new StringJoiner(",");
                    new TreeMap<>(committed.entrySet().stream()
                        .filter(e -> e.getValue() != null)
                        .collect(java.util.stream.Collectors.toMap(e -> e.getKey().partition(), e -> e.getValue().offset())))
                        .forEach((p, o) -> j.add(p + "=" + o));
                    System.out.println("committed " + j);
                } else if (command.equals("close")) {
                    consumer.close();
                    System.out.println("closed");
                    System.out.flush();
                    return;
                }
            }
        }
    }
}
