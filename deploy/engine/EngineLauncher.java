import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Starts one OpenSearch node of a tenant cluster: each node is its own JVM, so nodes join and
 * leave a running cluster one at a time (the local driver's online scaling).
 *
 * Arguments are the runner's (-basePath -baseHttpPort -clusterName -pluginTypes) plus
 * -nodeIndex N: the node is "Node N" with its home in basePath/node_N and HTTP on
 * baseHttpPort + N, the layout the runner gives node N of a multi-node JVM.
 * Or `-standby DIR`: a warm JVM that waits for its node (Standby.java).
 * Why not the runner's own main: it refuses HTTP ports above 9299 and exits silently on failure.
 */
public final class EngineLauncher extends OpenSearchRunner {
    private final int nodeIndex;

    private EngineLauncher(int nodeIndex) {
        this.nodeIndex = nodeIndex;
        setMaxHttpPort(-1);
    }

    @Override
    protected void execute(int id) {
        super.execute(nodeIndex); // the runner numbers its nodes from 1; this JVM runs node N only
    }

    /**
     * Start and close a node on ephemeral loopback ports in a scratch home. Without plugins and
     * without configuring logging: the k-NN plugin keeps node state in singletons, which a
     * closed node would leave behind (its vectors then never index), and log4j is configured
     * once, by the real node, into the cluster's log.
     */
    private static void warmUp(Path standby) throws Exception {
        for (int round = 0; round < Standby.WARMUPS; round++) {
            warmUpOnce(standby);
        }
    }

    private static void warmUpOnce(Path standby) throws Exception {
        Path scratch = Standby.scratch(standby);
        EngineLauncher warm = new EngineLauncher(1);
        warm.onBuild((index, settings) -> {
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", "0");
            settings.put("transport.port", "0");
        });
        warm.build("-basePath", scratch.toString(), "-clusterName", "standby-warmup", "-numOfNode", "1",
            "-disableESLogger");
        warm.close();
        Standby.remove(scratch);
    }

    public static void main(String[] args) {
        Path standby = Standby.directory(args);
        if (standby != null) {
            try {
                warmUp(standby);
                args = Standby.awaitAssignment(standby);
            } catch (Throwable t) {
                t.printStackTrace();
                System.exit(1);
            }
        }
        int nodeIndex = 1;
        List<String> runnerArgs = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            if ("-nodeIndex".equals(args[i]) && i + 1 < args.length) {
                nodeIndex = Integer.parseInt(args[++i]);
            } else {
                runnerArgs.add(args[i]);
            }
        }
        runnerArgs.add("-numOfNode");
        runnerArgs.add("1");
        EngineLauncher runner = new EngineLauncher(nodeIndex);
        // one node per JVM: the 3.x runner makes a lone node `single-node`, which neither joins
        // nor is joined by the cluster's other nodes (the default, zen, is what 2.19 ran)
        runner.onBuild((index, settings) -> settings.put("discovery.type", "zen"));
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        try {
            runner.build(runnerArgs.toArray(new String[0]));
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
        System.out.println("es-serverless: engine node " + nodeIndex + " started");
        while (!runner.isClosed()) {
            try {
                Thread.sleep(1000);
            } catch (InterruptedException e) {
                return;
            }
        }
    }
}
