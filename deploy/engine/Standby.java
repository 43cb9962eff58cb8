import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardWatchEventKinds;
import java.nio.file.WatchKey;
import java.nio.file.WatchService;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A warm engine JVM (both launchers): started as `-standby DIR` in place of a node's arguments,
 * it starts and closes a throwaway node (classes loaded, JIT warm), then waits for the local
 * driver to link DIR/assignment into place: the node's launcher arguments, one per line, and
 * `-logFile PATH`, where its output goes from then on. The driver's `local_processes` reads the
 * same file to know which node this JVM runs.
 */
final class Standby {
    static final String FLAG = "-standby";
    private static final String LOG_FLAG = "-logFile";
    // throwaway nodes started and closed before waiting: the JIT compiles a node's start-up
    // (above all the script engine's lookups) fully only after a few
    static final int WARMUPS = Integer.getInteger("ess.warmups", 3);

    private Standby() {
    }

    /** DIR of `-standby DIR`, or null when these are a node's own arguments. */
    static Path directory(String[] args) {
        List<String> list = Arrays.asList(args);
        int at = list.indexOf(FLAG);
        return at >= 0 && at + 1 < args.length ? Path.of(args[at + 1]).toAbsolutePath() : null;
    }

    /** A scratch home for the throwaway node, emptied first. */
    static Path scratch(Path dir) throws IOException {
        Path scratch = dir.resolve("warmup");
        remove(scratch);
        Files.createDirectories(scratch);
        return scratch;
    }

    static void remove(Path path) throws IOException {
        if (!Files.exists(path)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(path)) {
            for (Path p : (Iterable<Path>) walk.sorted(Comparator.reverseOrder())::iterator) {
                Files.deleteIfExists(p);
            }
        }
    }

    /**
     * Blocks until DIR/assignment exists; the node's arguments. The JVM exits when DIR is removed
     * (the driver shrank or stopped the pool) or its parent process set is gone.
     */
    static String[] awaitAssignment(Path dir) throws IOException, InterruptedException {
        Path file = dir.resolve("assignment");
        Files.writeString(dir.resolve("ready"), ""); // the driver takes a ready standby first
        System.out.println("es-serverless: standby ready");
        try (WatchService watch = dir.getFileSystem().newWatchService()) {
            dir.register(watch, StandardWatchEventKinds.ENTRY_CREATE);
            while (!Files.exists(file)) {
                if (!Files.isDirectory(dir)) {
                    System.exit(0);
                }
                WatchKey key = watch.poll(1, TimeUnit.SECONDS); // the look-again only covers a removed DIR
                if (key != null) {
                    key.pollEvents();
                    key.reset();
                }
            }
        }
        List<String> args = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            if (!line.isEmpty()) {
                args.add(line);
            }
        }
        int log = args.indexOf(LOG_FLAG);
        if (log >= 0 && log + 1 < args.size()) {
            PrintStream out = new PrintStream(new FileOutputStream(args.get(log + 1), true), true);
            System.out.println("es-serverless: standby assigned, output goes to " + args.get(log + 1));
            System.setOut(out);
            System.setErr(out);
            args.remove(log + 1);
            args.remove(log);
        }
        return args.toArray(new String[0]);
    }
}
