import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringSerializer;

/** Drives every topic-administration call the Java AdminClient makes and prints what it saw. */
public class AdminOps {
    static String errorName(Exception e) {
        Throwable t = e instanceof ExecutionException ? e.getCause() : e;
        return t.getClass().getSimpleName();
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        try (Admin admin = Admin.create(props)) {
            admin.createTopics(List.of(new NewTopic("admin-a", 3, (short) 1), new NewTopic("admin-b", Optional.empty(), Optional.empty()))).all().get();
            Map<String, TopicDescription> d = admin.describeTopics(List.of("admin-a", "admin-b")).allTopicNames().get();
            System.out.println("created=" + d.values().stream().sorted(Comparator.comparing(TopicDescription::name))
                .map(t -> t.name() + ":" + t.partitions().size()).collect(Collectors.joining(",")));
            try {
                admin.createTopics(List.of(new NewTopic("admin-a", 1, (short) 1))).all().get();
                System.out.println("duplicateError=none");
            } catch (Exception e) { System.out.println("duplicateError=" + errorName(e)); }
            try {
                admin.createTopics(List.of(new NewTopic("admin-rf", 1, (short) 3))).all().get();
                System.out.println("invalidRfError=none");
            } catch (Exception e) { System.out.println("invalidRfError=" + errorName(e)); }
            admin.createTopics(List.of(new NewTopic("admin-validate", 1, (short) 1)), new CreateTopicsOptions().validateOnly(true)).all().get();
            System.out.println("validateOnlyCreated=" + admin.listTopics().names().get().contains("admin-validate"));

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, "admin-a");
            admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET)))).all().get();
            ConfigEntry retention = admin.describeConfigs(List.of(res)).all().get().get(res).get("retention.ms");
            System.out.println("retention.ms=" + retention.value());
            System.out.println("retention.ms.source=" + retention.source());
            try {
                admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.SET)))).all().get();
                System.out.println("compactError=none");
            } catch (Exception e) { System.out.println("compactError=" + errorName(e)); }

            admin.createPartitions(Map.of("admin-a", NewPartitions.increaseTo(6))).all().get();
            System.out.println("partitionsAfterGrow=" + admin.describeTopics(List.of("admin-a")).allTopicNames().get().get("admin-a").partitions().size());

            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
            p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
            try (Producer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
                for (int i = 0; i < 10; i++) producer.send(new ProducerRecord<>("admin-a", 0, null, "v" + i)).get();
            }
            TopicPartition tp = new TopicPartition("admin-a", 0);
            DeletedRecords deleted = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(5))).lowWatermarks().get(tp).get();
            System.out.println("lowWatermark=" + deleted.lowWatermark());
            System.out.println("earliestAfterDelete=" + admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get().get(tp).offset());
            System.out.println("latest=" + admin.listOffsets(Map.of(tp, OffsetSpec.latest())).all().get().get(tp).offset());

            Map<Integer, Map<String, LogDirDescription>> dirs = admin.describeLogDirs(List.of(1)).allDescriptions().get();
            long parts = dirs.get(1).values().stream().flatMap(l -> l.replicaInfos().keySet().stream())
                .filter(t -> t.topic().equals("admin-a")).count();
            System.out.println("logDirPartitions=" + parts);

            admin.deleteTopics(List.of("admin-a")).all().get();
            System.out.println("topicsAfterDelete=" + admin.listTopics().names().get().stream().sorted().collect(Collectors.joining(",")));
        }
    }
}
