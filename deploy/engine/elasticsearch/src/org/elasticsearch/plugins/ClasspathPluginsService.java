package org.elasticsearch.plugins;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.elasticsearch.Build;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.jdk.ModuleQualifiedExportsService;

/**
 * The plugin service of a node started from jars: the (empty) modules and plugins
 * directories, plus plugin instances given by the launcher. In the server's package because
 * a loaded plugin's record is package-private.
 */
public class ClasspathPluginsService extends PluginsService {
    private final List<LoadedPlugin> classpathPlugins = new ArrayList<>();
    private List<LoadedPlugin> all;

    public ClasspathPluginsService(Settings settings, Environment environment, List<Plugin> plugins) {
        super(settings, environment.configFile(), environment.modulesFile(), environment.pluginsFile());
        for (Plugin plugin : plugins) {
            String name = plugin.getClass().getName();
            PluginDescriptor descriptor = new PluginDescriptor(name, "on the class path", "NA",
                Build.current().version(), "17", name, null, List.of(), false, false, false, false);
            classpathPlugins.add(new LoadedPlugin(descriptor, plugin));
        }
    }

    @Override
    protected void addServerExportsService(Map<String, List<ModuleQualifiedExportsService>> exports) {
        // on the class path the server is no named module: it has no qualified exports to offer
    }

    @Override
    protected List<LoadedPlugin> plugins() {
        if (classpathPlugins == null) { // called from the super constructor, before ours ran
            return super.plugins();
        }
        if (all == null) {
            List<LoadedPlugin> merged = new ArrayList<>(super.plugins());
            merged.addAll(classpathPlugins);
            all = List.copyOf(merged);
        }
        return all;
    }
}
