import java.util.*;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.StringSerializer;

/** Produces N records 0..N-1 with the Java client's defaults (idempotence on, acks=all). Args: bootstrap topic count. */
public class IdempotentProduce {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        int count = Integer.parseInt(args[2]);
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (Producer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < count; i++) acks.add(producer.send(new ProducerRecord<>(args[1], i % 2, null, Integer.toString(i))));
            producer.flush();
        }
        int ok = 0;
        for (Future<RecordMetadata> f : acks) { f.get(); ok++; }
        System.out.println("acked=" + ok);
    }
}
