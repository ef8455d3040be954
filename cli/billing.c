/* fogctl verbs for offers, balances, usage, invoices, payouts and the ledger. */
#include "cli/cli.h"

const struct cli_verb cli_billing_verbs[] = {
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
