import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.QuorumInfo;

/** Prints the metadata quorum as the Java AdminClient's describeMetadataQuorum() sees it. */
public class DescribeQuorum {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(props)) {
            QuorumInfo quorum = admin.describeMetadataQuorum().quorumInfo().get();
            System.out.println("leaderId=" + quorum.leaderId());
            System.out.println("leaderEpoch=" + quorum.leaderEpoch());
            System.out.println("highWatermark=" + quorum.highWatermark());
            System.out.println("voters=" + quorum.voters().stream()
                .map(v -> v.replicaId() + ":" + v.logEndOffset()
                    + ":" + v.lastFetchTimestamp().orElse(-1L)
                    + ":" + v.lastCaughtUpTimestamp().orElse(-1L))
                .sorted()
                .collect(Collectors.joining(",")));
            System.out.println("observers=" + quorum.observers().size());
            System.out.println("nodes=" + quorum.nodes().values().stream()
                .map(n -> n.nodeId() + "@" + n.endpoints().stream()
                    .map(e -> e.host() + ":" + e.port()).collect(Collectors.joining("|")))
                .sorted()
                .collect(Collectors.joining(",")));
        }
    }
}
