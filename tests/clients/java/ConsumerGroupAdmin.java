import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;

/**
 * The Java AdminClient's view of a live consumer-protocol group: describeConsumerGroups (which
 * uses ConsumerGroupDescribe), listConsumerGroups, and the calls refused while it has members.
 * Args: bootstrap group topic. Prints key=value lines.
 */
public class ConsumerGroupAdmin {
    static String errorName(Exception e) {
        Throwable t = e instanceof ExecutionException ? e.getCause() : e;
        return t.getClass().getSimpleName();
    }

    static String partitions(Set<TopicPartition> parts) {
        return parts.stream().map(TopicPartition::partition).sorted().map(String::valueOf)
            .collect(Collectors.joining(","));
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], group = args[1], topic = args[2];
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(props)) {
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
            System.out.println("type=" + d.type());
            System.out.println("state=" + d.state());
            System.out.println("assignor=" + d.partitionAssignor());
            System.out.println("assignments=" + d.members().stream()
                .map(m -> partitions(m.assignment().topicPartitions()))
                .sorted().collect(Collectors.joining("|")));
            System.out.println("targets=" + d.members().stream()
                .map(m -> m.targetAssignment().map(t -> partitions(t.topicPartitions())).orElse("none"))
                .sorted().collect(Collectors.joining("|")));
            System.out.println("hosts=" + d.members().stream().map(MemberDescription::host)
                .distinct().collect(Collectors.joining(",")));
            Collection<ConsumerGroupListing> listed = admin.listConsumerGroups().all().get();
            System.out.println("listed=" + listed.stream()
                .filter(l -> l.groupId().equals(group))
                .map(l -> l.type().map(GroupType::toString).orElse("?") + ":" + l.state().map(Object::toString).orElse("?"))
                .collect(Collectors.joining(",")));
            try {
                admin.alterConsumerGroupOffsets(group,
                    Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(0))).all().get();
                System.out.println("alter_offsets=ok");
            } catch (Exception e) {
                System.out.println("alter_offsets=" + errorName(e));
            }
            try {
                admin.deleteConsumerGroups(List.of(group)).all().get();
                System.out.println("delete=ok");
            } catch (Exception e) {
                System.out.println("delete=" + errorName(e));
            }
        }
    }
}
