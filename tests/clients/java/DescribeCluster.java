import java.util.Properties;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

/** Prints the cluster as the Java AdminClient sees it: nodes, controller, cluster id. */
public class DescribeCluster {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        try (Admin admin = Admin.create(props)) {
            DescribeClusterResult cluster = admin.describeCluster();
            String nodes = cluster.nodes().get().stream()
                .map(n -> n.id() + "@" + n.host() + ":" + n.port())
                .sorted()
                .collect(Collectors.joining(","));
            System.out.println("nodes=" + nodes);
            System.out.println("controller=" + cluster.controller().get().id());
            System.out.println("clusterId=" + cluster.clusterId().get());
        }
    }
}
