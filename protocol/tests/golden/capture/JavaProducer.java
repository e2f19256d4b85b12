// Sends three keyed records to topic "golden" with the Java client (single-file source).
// Usage: java -cp 'kafka-clients.jar:...' JavaProducer.java PORT
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;

public class JavaProducer {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", "127.0.0.1:" + args[0]);
        props.put("client.id", "java");
        props.put("linger.ms", "50");
        props.put("compression.type", "zstd");
        props.put("key.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        props.put("value.serializer", "org.apache.kafka.common.serialization.StringSerializer");
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            for (int i = 0; i < 3; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(
                    "golden", null, 1_700_000_000_000L + i, "k" + i, "value-" + i);
                r.headers().add("h", "v".getBytes());
                p.send(r);
            }
            p.flush();
        }
        System.out.println("java client " + org.apache.kafka.common.utils.AppInfoParser.getVersion());
    }
}
