package org.elasticsearch.node;

import java.util.List;

import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsService;

/**
 * A node whose plugins are instances on the class path rather than bundles in a plugins
 * directory. It lives in the server's package because NodeConstruction and its service
 * provider are package-private there.
 */
public class ClasspathNode extends Node {
    public ClasspathNode(Environment environment, List<Plugin> plugins) {
        super(NodeConstruction.prepareConstruction(environment, new Provider(plugins), true));
    }

    private static final class Provider extends NodeServiceProvider {
        private final List<Plugin> plugins;

        Provider(List<Plugin> plugins) {
            this.plugins = plugins;
        }

        @Override
        PluginsService newPluginService(Environment environment, Settings settings) {
            return new ClasspathPluginsService(settings, environment, plugins);
        }
    }
}
