import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.ClasspathNode;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.transport.netty4.Netty4Plugin;

/**
 * Starts one Elasticsearch 8 node of a tenant cluster from the core server jars on the class
 * path: each node is its own JVM, as on the OpenSearch path.
 *
 * Arguments: -basePath DIR -nodeIndex N (and -baseHttpPort, -clusterName, read by the local
 * driver only), or `-standby DIR`: a warm JVM that waits for its node (Standby.java). The node's home is basePath/node_N; its settings come from
 * node_N/config/elasticsearch.yml and its logging from log4j2.properties beside it, which the
 * driver writes. Plugins are Netty 4 (HTTP and
 * transport) and RootEndpoint (GET /, as rest-root would answer it).
 * Why not the test framework's MockNode: it refuses to run as root, and it needs
 * randomizedtesting on the class path, which breaks Randomness.get() outside a test.
 */
public final class ElasticsearchLauncher {
    /**
     * Start and close a node on ephemeral loopback ports in a scratch home. Logging is set up
     * as far as the node needs it and no further: log4j is configured once, by the real node,
     * into the cluster's log.
     */
    private static void warmUp(Path standby) throws Exception {
        LogConfigurator.configureESLogging();
        Path scratch = Standby.scratch(standby);
        Files.createDirectories(scratch.resolve("config"));
        Files.createDirectories(scratch.resolve("modules"));
        Files.createDirectories(scratch.resolve("plugins"));
        Settings initial = Settings.builder()
            .put("path.home", scratch.toString())
            .put("cluster.name", "standby-warmup")
            .put("node.name", "warmup")
            .put("network.host", "127.0.0.1")
            .put("http.port", "0")
            .put("transport.port", "0")
            .put("discovery.type", "single-node")
            .build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            initial, Map.of(), scratch.resolve("config"), () -> "warmup");
        ClasspathNode node = new ClasspathNode(environment, List.of(new Netty4Plugin(), new RootEndpoint()));
        node.start();
        node.prepareForClose();
        node.close();
        node.awaitClose(10, java.util.concurrent.TimeUnit.SECONDS);
        Standby.remove(scratch);
    }

    public static void main(String[] args) throws Exception {
        Path standby = Standby.directory(args);
        if (standby == null) {
            LogConfigurator.configureESLogging();
        } else {
            warmUp(standby); // which set up ES logging already
            args = Standby.awaitAssignment(standby);
        }
        Path base = null;
        int index = 1;
        for (int i = 0; i + 1 < args.length; i++) {
            if ("-basePath".equals(args[i])) {
                base = Path.of(args[++i]);
            } else if ("-nodeIndex".equals(args[i])) {
                index = Integer.parseInt(args[++i]);
            }
        }
        final int nodeIndex = index;
        if (base == null) {
            System.err.println("usage: ElasticsearchLauncher -basePath DIR -nodeIndex N");
            System.exit(2);
        }
        Path home = base.resolve("node_" + nodeIndex).toAbsolutePath();
        // the plugin service reads these directories; the core server ships neither
        Files.createDirectories(home.resolve("modules"));
        Files.createDirectories(home.resolve("plugins"));
        Files.createDirectories(home.resolve("logs"));
        Settings initial = Settings.builder().put("path.home", home.toString()).build();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            initial, Map.of(), home.resolve("config"), () -> "Node " + nodeIndex);
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        LogConfigurator.configure(environment, true); // config/log4j2.properties: the console, i.e. engine.log

        ClasspathNode node = new ClasspathNode(environment, List.of(new Netty4Plugin(), new RootEndpoint()));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.prepareForClose();
                node.close();
                node.awaitClose(10, java.util.concurrent.TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        try {
            node.start();
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
        System.out.println("es-serverless: elasticsearch node " + nodeIndex + " started");
        while (!node.isClosed()) {
            Thread.sleep(1000);
        }
    }
}
