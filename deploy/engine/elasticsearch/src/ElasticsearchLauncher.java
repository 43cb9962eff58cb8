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
 * driver only). The node's home is basePath/node_N; its settings come from
 * node_N/config/elasticsearch.yml and its logging from log4j2.properties beside it, which the
 * driver writes. Plugins are Netty 4 (HTTP and
 * transport) and RootEndpoint (GET /, as rest-root would answer it).
 * Why not the test framework's MockNode: it refuses to run as root, and it needs
 * randomizedtesting on the class path, which breaks Randomness.get() outside a test.
 */
public final class ElasticsearchLauncher {
    public static void main(String[] args) throws Exception {
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
        LogConfigurator.configureESLogging();
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
