package org.elasticsearch.node;

import java.util.List;
import java.util.Map;

import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;

/**
 * A node whose plugins are instances on the class path rather than bundles in a plugins
 * directory. It lives in the server's package because NodeConstruction and its service
 * provider are package-private there.
 */
public class ClasspathNode extends Node {
    public ClasspathNode(Environment environment, List<Plugin> plugins) {
        super(NodeConstruction.prepareConstruction(environment, loader(environment), new Provider(plugins), true));
    }

    /**
     * The bundles of the (empty) modules and plugins directories, as the bootstrap loads them; no
     * server exports: on the class path the server is no named module and has none to offer.
     */
    private static PluginsLoader loader(Environment environment) {
        return PluginsLoader.createPluginsLoader(PluginsLoader.loadModulesBundles(environment.modulesDir()),
            PluginsLoader.loadPluginsBundles(environment.pluginsDir()), Map.of(), false);
    }

    private static final class Provider extends NodeServiceProvider {
        private final List<Plugin> plugins;

        Provider(List<Plugin> plugins) {
            this.plugins = plugins;
        }

        @Override
        PluginsService newPluginService(Environment environment, PluginsLoader pluginsLoader) {
            return new ClasspathPluginsService(environment.settings(), environment, pluginsLoader, plugins);
        }
    }
}
