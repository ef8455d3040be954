/* fogctl verbs for images, templates and SSH keys. */
#include "cli/cli.h"

const struct cli_verb cli_image_verbs[] = {
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
