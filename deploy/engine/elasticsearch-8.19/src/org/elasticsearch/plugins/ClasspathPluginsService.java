package org.elasticsearch.plugins;

import java.util.ArrayList;
import java.util.List;

import org.elasticsearch.Build;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;

/**
 * The plugin service of a node started from jars: the (empty) modules and plugins
 * directories, plus plugin instances given by the launcher. In the server's package because
 * a loaded plugin's record is package-private.
 */
public class ClasspathPluginsService extends PluginsService {
    private final List<LoadedPlugin> classpathPlugins = new ArrayList<>();
    private List<LoadedPlugin> all;

    public ClasspathPluginsService(Settings settings, Environment environment, PluginsLoader loader, List<Plugin> plugins) {
        super(settings, environment.configDir(), loader);
        for (Plugin plugin : plugins) {
            String name = plugin.getClass().getName();
            PluginDescriptor descriptor = new PluginDescriptor(name, "on the class path", "NA",
                Build.current().version(), "17", name, null, List.of(), false, false, false, false);
            classpathPlugins.add(new LoadedPlugin(descriptor, plugin, plugin.getClass().getClassLoader()));
        }
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
