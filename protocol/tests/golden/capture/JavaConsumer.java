// Polls partition 0 of topic "golden" from the beginning with the Java consumer (assign, no group).
// Usage: java -cp 'kafka-clients.jar:...' JavaConsumer.java PORT
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

public class JavaConsumer {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put("bootstrap.servers", "127.0.0.1:" + args[0]);
        props.put("client.id", "java-consumer");
        props.put("fetch.max.wait.ms", "100");
        props.put("key.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        props.put("value.deserializer", "org.apache.kafka.common.serialization.StringDeserializer");
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
            TopicPartition tp = new TopicPartition("golden", 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            for (int i = 0; i < 5; i++) {
                c.poll(Duration.ofMillis(300));
            }
            System.out.println("java consumer position " + c.position(tp));
        }
    }
}
