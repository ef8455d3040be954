/* fog-nodeagent's option table and its few derived values. */
#include "nodeagent/config.h"

#include <stddef.h>

#define F(x) CONFIG_FIELD(struct agent_settings, x)
const struct config_opt agent_options[] = {
    { "data-dir", CONFIG_STRING, F(data_dir), 0, 0, "/var/lib/fog-nodeagent",
      "directory holding the credential, CA, VM disks and console logs" },
    { "libvirt", CONFIG_STRING, F(libvirt_uri), 0, 0, NULL,
      "libvirt URI [default: the one given at join, else qemu:///system]" },
    { "root", CONFIG_STRING, F(root), 0, 0, "/",
      "prefix of every /proc, /sys and /dev path read for the inventory" },
    { "image-dir", CONFIG_STRING, F(image_dir), 0, 0, NULL,
      "local base images, NAME.qcow2 or NAME.img [default: DATA-DIR/images]" },
    { "controller", CONFIG_STRING, F(controller), 0, 0, NULL,
      "join: controller URL, https://host:port" },
    { "token", CONFIG_STRING, F(token), 0, 0, NULL,
      "join: the join token (fogjoin....)" },
    { "name", CONFIG_STRING, F(name), 0, 0, NULL,
      "join: node name [default: derived from the host name]" },
    { "qemu-img", CONFIG_STRING, F(qemu_img), 0, 0, "qemu-img",
      "qemu-img program used to create and grow disks" },
    { "heartbeat", CONFIG_INT, F(heartbeat_s), 0, 3600, "0",
      "seconds between status posts (0: the controller's interval)" },
    { "shutdown-timeout", CONFIG_INT, F(shutdown_timeout_s), 1, 3600, "60",
      "seconds an ACPI shutdown may take before the domain is destroyed" },
    { "allow-tcg", CONFIG_BOOL, F(allow_tcg), 0, 0, "true",
      "run domains under QEMU's TCG when /dev/kvm is missing" },
    { "verbose", CONFIG_BOOL, F(verbose), 0, 0, NULL, "log debug messages" },
};
#undef F
const size_t agent_options_n = ARRAY_SIZE(agent_options);

void agent_config_defaults(struct agent_settings *s)
{
    memset(s, 0, sizeof(*s));
    config_defaults(agent_options, agent_options_n, s);
}

int agent_config_parse(struct agent_settings *s, int argc, char **argv,
                       int start, char ***ret_args, int *ret_nargs)
{
    return config_parse_args(agent_options, agent_options_n, s, argc, argv,
                             start, ret_args, ret_nargs);
}

char *agent_config_image_dir(const struct agent_settings *s)
{
    if (s->image_dir && *s->image_dir)
        return xstrdup(s->image_dir);
    return xasprintf("%s/images", s->data_dir);
}

void agent_config_free(struct agent_settings *s)
{
    config_free(agent_options, agent_options_n, s);
}
