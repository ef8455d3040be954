/* fogctl verbs for money: offer-set, offer-show, credit, balance, usage,
 * invoice, payouts, ledger. Amounts are exact decimals of tokens (billing's
 * money parser and printer, never floating point); every statement ends in
 * totals, and the sums of its lines are checked against them. */
#include "billing/money.h"
#include "billing/period.h"
#include "cli/cli.h"
#include "common/buf.h"
#include "common/timeutil.h"

#include <errno.h>

/* ---- amounts ---- */

/* The token symbol an answer speaks in. */
static const char *currency(const json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "currency"));
    return s && *s ? s : MONEY_DEFAULT_SYMBOL;
}

/* o[key_nano] (else o[key] as a decimal) in nano-tokens; false when absent
 * or malformed. */
static bool amount_of(const json_t *o, const char *key, int64_t *ret)
{
    _cleanup_free_ char *k = xasprintf("%s_nano", key);
    json_t *n = json_object_get(o, k);
    if (json_is_integer(n)) {
        *ret = (int64_t)json_integer_value(n);
        return true;
    }
    const char *t = json_string_value(json_object_get(o, key));
    return t && money_parse(t, ret) == 0;
}

/* o[key] for humans: "12.5 FOG", or "-". Caller frees. */
static char *amount_text(const json_t *o, const char *key, const char *sym)
{
    int64_t v;
    return amount_of(o, key, &v) ? money_format(v, sym) : xstrdup("-");
}

static void put_text(json_t *row, const char *col, char *owned)
{
    json_object_set_new(row, col, json_string(owned));
    free(owned);
}

static void put_money(json_t *row, const char *col, int64_t nano,
                      const char *sym)
{
    put_text(row, col, money_format(nano, sym));
}

/* A price or credit from the command line into nano-tokens (> 0, or >= 0
 * with allow_zero). 0, or CLI_USAGE after saying why. */
static int amount_arg(const struct cli_verb *v, const char *what,
                      const char *s, bool allow_zero, int64_t *ret)
{
    int64_t n;
    int e = money_parse(s, &n);
    if (e == -ERANGE)
        return cli_usage(v, "amount '%s' for %s is too large", s, what);
    if (e < 0 || n < 0 || (!allow_zero && n == 0))
        return cli_usage(v, "invalid amount '%s' for %s: a %sdecimal number "
                            "of tokens with at most 9 decimals, like 0.01",
                         s, what, allow_zero ? "non-negative " : "positive ");
    *ret = n;
    return 0;
}

/* The statement's lines do not add up to its totals: say so and fail. */
static int mismatch(const char *what, int64_t lines, int64_t total,
                    const char *sym)
{
    _cleanup_free_ char *l = money_format(lines, sym);
    _cleanup_free_ char *t = money_format(total, sym);
    return cli_fail("%s: the lines add up to %s but the total says %s", what,
                    l, t);
}

/* Key-value lines from a list of {label, text} pairs (strings). */
static void print_summary(const char *const *pairs, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i += 2)
        if (strlen(pairs[i]) > w)
            w = strlen(pairs[i]);
    for (size_t i = 0; i < n; i += 2) {
        _cleanup_free_ char *label = xasprintf("%s:", pairs[i]);
        printf("%-*s %s\n", (int)w + 1, label, pairs[i + 1]);
    }
}

/* PREFIX + the escaped reference + SUFFIX; caller frees. */
static char *path_of(const char *prefix, const char *ref, const char *suffix)
{
    _cleanup_free_ char *e = cli_escape(ref);
    return xasprintf("%s%s%s", prefix, e, suffix);
}

/* A table whose rows may lack some columns (totals rows): blanks there. */
static void print_rows(json_t *rows, const char *columns)
{
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        char *save = NULL;
        _cleanup_free_ char *copy = xstrdup(columns);
        for (char *c = strtok_r(copy, ",", &save); c;
             c = strtok_r(NULL, ",", &save))
            if (!json_object_get(row, c))
                json_object_set_new(row, c, json_string(""));
    }
    cli_print_table(rows, columns);
}

/* ---- offers ---- */

static const struct {
    const char *flag, *field;
} offer_prices[] = {
    { "vcpu-hour", "vcpu_hour" },
    { "mem-gib-hour", "mem_gib_hour" },
    { "disk-gib-month", "disk_gib_month" },
    { "gpu-hour", "gpu_hour" },
    { "port-hour", "port_hour" },
};

static void offer_print(struct cli *c, const char *node, json_t *offer)
{
    if (c->json) {
        cli_print_json(offer);
        return;
    }
    const char *sym = currency(offer);
    json_auto_t *o = json_pack("{s:s, s:O?}", "node", node, "node_id",
                               json_object_get(offer, "node_id"));
    for (size_t i = 0; i < ARRAY_SIZE(offer_prices); i++)
        put_text(o, offer_prices[i].field,
                 amount_text(offer, offer_prices[i].field, sym));
    const char *model;
    json_t *price;
    json_t *models = json_array();
    json_object_foreach(json_object_get(offer, "gpu_models"), model, price) {
        int64_t v;
        const char *t = json_string_value(price);
        _cleanup_free_ char *m = t && money_parse(t, &v) == 0
                                     ? money_format(v, sym)
                                     : xstrdup("-");
        json_array_append_new(models, json_sprintf("%s=%s", model, m));
    }
    json_object_set_new(o, "gpu_models", models);
    json_object_set(o, "default", json_object_get(offer, "default"));
    if (json_object_get(offer, "updated_at"))
        json_object_set(o, "updated_at", json_object_get(offer, "updated_at"));
    cli_print_fields(o, "node,node_id,vcpu_hour,mem_gib_hour,disk_gib_month,"
                        "gpu_hour,gpu_models,port_hour,default,updated_at");
}

static int offer_show(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = path_of("/v1/nodes/", a->pos[0], "/offer");
    json_auto_t *offer = NULL;
    if (cli_call(c, "GET", p, NULL, &offer) != 0)
        return CLI_FAIL;
    offer_print(c, a->pos[0], offer);
    return CLI_OK;
}

static int offer_set(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("offer-set");
    json_auto_t *prices = json_object(), *models = json_object();
    int r;
    /* Everything is checked before the first call. */
    for (size_t i = 0; i < ARRAY_SIZE(offer_prices); i++) {
        if (streq(offer_prices[i].flag, "gpu-hour"))
            continue;
        const char *s = cli_flag(a, offer_prices[i].flag);
        int64_t n;
        if (!s)
            continue;
        _cleanup_free_ char *what = xasprintf("--%s", offer_prices[i].flag);
        if ((r = amount_arg(v, what, s, true, &n)) != 0)
            return r;
        put_money(prices, offer_prices[i].field, n, NULL);
    }
    size_t i;
    json_t *it;
    json_array_foreach(cli_flag_list(a, "gpu-hour"), i, it) {
        const char *s = json_string_value(it), *eq = strrchr(s, '=');
        int64_t n;
        if ((r = amount_arg(v, "--gpu-hour", eq ? eq + 1 : s, true, &n)) != 0)
            return r;
        if (!eq) {
            /* A bare amount is the price of any GPU without a model price. */
            if (json_object_get(prices, "gpu_hour"))
                return cli_usage(v, "the price of any GPU is given twice");
            put_money(prices, "gpu_hour", n, NULL);
            continue;
        }
        _cleanup_free_ char *model = xstrndup(s, (size_t)(eq - s));
        if (!*model || strlen(model) > 128)
            return cli_usage(v, "invalid GPU model in --gpu-hour '%s' (MODEL="
                                "AMOUNT)", s);
        _cleanup_free_ char *t = money_format(n, NULL);
        json_object_set_new(models, model, json_string(t));
    }
    if (json_object_size(prices) == 0 && json_object_size(models) == 0)
        return cli_usage(v, "give at least one price");

    /* The API replaces the whole offer; prices not given keep their
     * current value, as a user changing one price expects. */
    _cleanup_free_ char *p = path_of("/v1/nodes/", a->pos[0], "/offer");
    json_auto_t *cur = NULL, *out = NULL;
    if (cli_call(c, "GET", p, NULL, &cur) != 0)
        return CLI_FAIL;
    json_auto_t *body = json_object();
    for (size_t k = 0; k < ARRAY_SIZE(offer_prices); k++) {
        const char *f = offer_prices[k].field;
        json_t *val = json_object_get(prices, f);
        if (!val)
            val = json_object_get(cur, f);
        if (json_is_string(val))
            json_object_set(body, f, val);
    }
    json_t *all = json_object();
    if (json_is_object(json_object_get(cur, "gpu_models")))
        json_object_update(all, json_object_get(cur, "gpu_models"));
    json_object_update(all, models);
    json_object_set_new(body, "gpu_models", all);
    if (cli_call(c, "PUT", p, body, &out) != 0)
        return CLI_FAIL;
    offer_print(c, a->pos[0], out);
    return CLI_OK;
}

/* ---- credits and balances ---- */

static int credit(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("credit");
    const char *memo = cli_flag(a, "memo");
    int64_t n;
    int r;
    if ((r = amount_arg(v, "the credit", a->pos[1], false, &n)) != 0)
        return r;
    if (!memo)
        return cli_usage(v, "--memo is required: say why the account is "
                            "credited");
    if (strlen(memo) > 200)
        return cli_usage(v, "--memo is longer than 200 characters");
    _cleanup_free_ char *amount = money_format(n, NULL);
    json_auto_t *body = json_pack("{s:s, s:s}", "amount", amount, "memo", memo);
    if (!body)
        return cli_usage(v, "--memo is not valid UTF-8");
    _cleanup_free_ char *p = path_of("/v1/accounts/", a->pos[0], "/credit");
    json_auto_t *out = NULL;
    if (cli_call(c, "POST", p, body, &out) != 0)
        return CLI_FAIL;
    if (c->json) {
        cli_print_json(out);
        return CLI_OK;
    }
    const char *sym = currency(out);
    _cleanup_free_ char *amt = amount_text(out, "amount", sym);
    _cleanup_free_ char *bal = amount_text(out, "balance", sym);
    printf("credited %s to %s (transaction %s); balance %s\n", amt, a->pos[0],
           json_string_value(json_object_get(out, "tx_id")), bal);
    return CLI_OK;
}

static int balance_one(struct cli *c, const char *ref, const char *name)
{
    _cleanup_free_ char *p = path_of("/v1/accounts/", ref, "/balance");
    json_auto_t *out = NULL;
    if (cli_call(c, "GET", p, NULL, &out) != 0)
        return CLI_FAIL;
    json_object_set_new(out, "account", json_string(name ? name : ref));
    if (c->json) {
        cli_print_json(out);
        return CLI_OK;
    }
    json_auto_t *row = json_pack("{s:O?, s:O?}", "account",
                                 json_object_get(out, "account"), "account_id",
                                 json_object_get(out, "account_id"));
    put_text(row, "balance", amount_text(out, "balance", currency(out)));
    cli_print_fields(row, "account,account_id,balance");
    return CLI_OK;
}

static int balance(struct cli *c, struct cli_args *a)
{
    if (a->npos == 1)
        return balance_one(c, a->pos[0], NULL);
    /* Without an account: the caller's own, or for an admin, who sees every
     * account, all of them with a total. */
    json_auto_t *accts = NULL;
    if (cli_list_all(c, "/v1/accounts", SIZE_MAX, &accts) != 0)
        return CLI_FAIL;
    if (json_array_size(accts) == 0)
        return cli_fail("no account is visible to this key");
    if (json_array_size(accts) == 1) {
        json_t *one = json_array_get(accts, 0);
        return balance_one(c, json_string_value(json_object_get(one, "id")),
                           json_string_value(json_object_get(one, "name")));
    }
    json_auto_t *rows = json_array(), *items = json_array();
    const char *sym = MONEY_DEFAULT_SYMBOL;
    json_auto_t *keep_sym = NULL;
    int64_t total = 0;
    size_t i;
    json_t *acct;
    json_array_foreach(accts, i, acct) {
        const char *id = json_string_value(json_object_get(acct, "id"));
        _cleanup_free_ char *p = path_of("/v1/accounts/", id, "/balance");
        json_t *b = NULL;
        int64_t n;
        if (cli_call(c, "GET", p, NULL, &b) != 0)
            return CLI_FAIL;
        if (!amount_of(b, "balance", &n) || money_add(total, n, &total) < 0) {
            json_decref(b);
            return cli_fail("balance of account %s is not an amount", id);
        }
        if (!keep_sym) {
            keep_sym = json_string(currency(b));
            sym = json_string_value(keep_sym);
        }
        json_object_set(b, "account", json_object_get(acct, "name"));
        json_object_set(b, "role", json_object_get(acct, "role"));
        json_t *row = json_pack("{s:O?, s:O?}", "account",
                                json_object_get(acct, "name"), "role",
                                json_object_get(acct, "role"));
        put_money(row, "balance", n, sym);
        json_array_append_new(rows, row);
        json_array_append_new(items, b);
    }
    if (c->json) {
        json_auto_t *out = json_pack("{s:O?, s:I, s:s}", "items", items,
                                     "total_nano", (json_int_t)total,
                                     "currency", sym);
        put_money(out, "total", total, NULL);
        cli_print_json(out);
        return CLI_OK;
    }
    json_t *tot = json_pack("{s:s, s:s}", "account", "TOTAL", "role", "");
    put_money(tot, "balance", total, sym);
    json_array_append_new(rows, tot);
    print_rows(rows, "account,role,balance");
    return CLI_OK;
}

/* ---- usage ---- */

/* "2026-11-05" (midnight UTC; with end_of_day the next midnight, so the
 * day is included) or RFC 3339 "2026-11-05T10:00:00Z". false if neither. */
static bool date_arg(const char *s, bool end_of_day, int64_t *ret)
{
    if (time_parse_rfc3339(s, ret) == 0)
        return true;
    if (strlen(s) != 10)
        return false;
    _cleanup_free_ char *full = xasprintf("%sT00:00:00Z", s);
    int64_t t;
    if (time_parse_rfc3339(full, &t) < 0)
        return false;
    *ret = end_of_day ? t + 86400 : t;
    return true;
}

static int usage_list(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("usage");
    const char *from = cli_flag(a, "from"), *to = cli_flag(a, "to");
    const char *vm = cli_flag(a, "vm");
    int64_t f = 0, t = 0;
    if (from && !date_arg(from, false, &f))
        return cli_usage(v, "invalid --from '%s' (YYYY-MM-DD or "
                            "YYYY-MM-DDTHH:MM:SSZ)", from);
    if (to && !date_arg(to, true, &t))
        return cli_usage(v, "invalid --to '%s' (YYYY-MM-DD or "
                            "YYYY-MM-DDTHH:MM:SSZ)", to);
    if (from && to && t <= f)
        return cli_usage(v, "--to is not after --from");
    struct buf q = BUF_INIT;
    char fs[21], ts[21];
    buf_puts(&q, "/v1/usage");
    if (vm) {
        _cleanup_free_ char *e = cli_escape(vm);
        buf_printf(&q, "%svm=%s", strchr(buf_str(&q), '?') ? "&" : "?", e);
    }
    if (from) {
        time_format_rfc3339(f, fs);
        buf_printf(&q, "%sfrom=%s", strchr(buf_str(&q), '?') ? "&" : "?", fs);
    }
    if (to) {
        time_format_rfc3339(t, ts);
        buf_printf(&q, "%sto=%s", strchr(buf_str(&q), '?') ? "&" : "?", ts);
    }
    _cleanup_free_ char *path = buf_steal(&q);
    json_auto_t *out = NULL;
    if (cli_call(c, "GET", path, NULL, &out) != 0)
        return CLI_FAIL;
    json_t *items = json_object_get(out, "items");
    if (vm && json_array_size(items) == 0)
        return cli_fail("no usage of VM '%s'", vm);
    const char *sym = currency(out);
    int64_t sum = 0, secs = 0, total = 0;
    json_auto_t *rows = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        int64_t ch = 0;
        amount_of(it, "charged", &ch);
        money_add(sum, ch, &sum);
        secs += json_integer_value(json_object_get(it, "seconds"));
        json_t *row = json_pack(
            "{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "vm", json_object_get(it, "vm_name"),
            "seconds", json_object_get(it, "seconds"), "billable",
            json_object_get(it, "billable_seconds_total"), "capped",
            json_object_get(it, "capped_seconds_total"), "samples",
            json_object_get(it, "samples"), "duplicates",
            json_object_get(it, "duplicate_samples"));
        put_money(row, "charged", ch, sym);
        json_array_append_new(rows, row);
    }
    if (!amount_of(out, "charged", &total) || total != sum)
        return mismatch("usage", sum, total, sym);
    if (secs != json_integer_value(json_object_get(out, "seconds")))
        return cli_fail("usage: the lines add up to %lld s but the total says "
                        "%lld s", (long long)secs,
                        (long long)json_integer_value(json_object_get(out, "seconds")));
    if (c->json) {
        cli_print_json(out);
        return CLI_OK;
    }
    json_t *tot = json_pack("{s:s, s:I}", "vm", "TOTAL", "seconds",
                            (json_int_t)secs);
    put_money(tot, "charged", total, sym);
    json_array_append_new(rows, tot);
    if (from || to)
        printf("usage from %s to %s\n", from ? fs : "the start",
               to ? ts : "now");
    print_rows(rows, "vm,seconds,charged,billable,capped,samples,"
                          "duplicates");
    return CLI_OK;
}

/* ---- statements ---- */

/* "/v1/PATH?period=P[&account=A]" after checking the period. */
static int statement_path(const struct cli_verb *v, struct cli_args *a,
                          const char *base, char **ret)
{
    const char *period = cli_flag(a, "period"), *acct = cli_flag(a, "account");
    int64_t s, e;
    if (!period)
        return cli_usage(v, "--period YYYY-MM is required");
    if (period_parse(period, &s, &e) < 0)
        return cli_usage(v, "invalid --period '%s' (a month like 2026-11)",
                         period);
    if (acct) {
        _cleanup_free_ char *esc = cli_escape(acct);
        *ret = xasprintf("%s?period=%s&account=%s", base, period, esc);
    } else {
        *ret = xasprintf("%s?period=%s", base, period);
    }
    return 0;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* Who a statement is about, for its heading: the name asked for, else
 * the account's name looked up quietly (its id when that fails). */
static char *statement_who(struct cli *c, struct cli_args *a, const char *id)
{
    const char *asked = cli_flag(a, "account");
    if (asked)
        return xstrdup(asked);
    struct api_client *api = cli_api(c);
    _cleanup_free_ char *p = path_of("/v1/accounts/", id, "");
    struct api_reply rep;
    char *name = NULL;
    if (!api)
        return xstrdup(id);
    if (api_request(api, "GET", p, NULL, NULL, &rep) == 0 && rep.status == 200 &&
        json_string_value(json_object_get(rep.json, "name")))
        name = xstrdup(json_string_value(json_object_get(rep.json, "name")));
    api_reply_clear(&rep);
    return name ? name : xstrdup(id);
}

static int invoice(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *path = NULL;
    int r = statement_path(cli_verb_find("invoice"), a, "/v1/invoices", &path);
    if (r != 0)
        return r;
    json_auto_t *inv = NULL;
    if (cli_call(c, "GET", path, NULL, &inv) != 0)
        return CLI_FAIL;
    const char *sym = currency(inv);
    int64_t charges = 0, credits = 0, lines = 0, cred_lines = 0, secs = 0;
    int64_t opening = 0, closing = 0, adjust = 0;
    if (!amount_of(inv, "charges", &charges) ||
        !amount_of(inv, "credits_total", &credits) ||
        !amount_of(inv, "opening_balance", &opening) ||
        !amount_of(inv, "closing_balance", &closing) ||
        !amount_of(inv, "adjustments", &adjust))
        return cli_fail("invoice: the answer lacks its totals");
    json_auto_t *rows = json_array(), *crows = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(inv, "lines"), i, it) {
        int64_t n = 0;
        amount_of(it, "amount", &n);
        money_add(lines, n, &lines);
        secs += json_integer_value(json_object_get(it, "seconds"));
        json_t *vmname = json_object_get(it, "vm_name");
        json_t *row = json_pack("{s:O?, s:O?, s:O?}", "vm",
                                json_is_string(vmname) ? vmname
                                                       : json_object_get(it, "vm_id"),
                                "vm_id", json_object_get(it, "vm_id"),
                                "seconds", json_object_get(it, "seconds"));
        put_money(row, "amount", n, sym);
        json_array_append_new(rows, row);
    }
    json_array_foreach(json_object_get(inv, "credits"), i, it) {
        int64_t n = 0;
        amount_of(it, "amount", &n);
        money_add(cred_lines, n, &cred_lines);
        json_t *row = json_pack("{s:O?, s:O?, s:O?}", "time",
                                json_object_get(it, "time"), "memo",
                                json_object_get(it, "memo"), "tx",
                                json_object_get(it, "tx_id"));
        put_money(row, "amount", n, sym);
        json_array_append_new(crows, row);
    }
    if (lines != charges)
        return mismatch("invoice charges", lines, charges, sym);
    if (cred_lines != credits)
        return mismatch("invoice credits", cred_lines, credits, sym);
    int64_t want;
    if (money_add(opening, credits, &want) < 0 ||
        money_add(want, adjust, &want) < 0 ||
        money_sub(want, charges, &want) < 0 || want != closing)
        return mismatch("invoice balance", want, closing, sym);
    if (c->json) {
        cli_print_json(inv);
        return CLI_OK;
    }
    _cleanup_free_ char *who = statement_who(c, a, str(inv, "account_id"));
    printf("Invoice %s for %s (%s to %s)\n\n", str(inv, "period"), who,
           str(inv, "from"), str(inv, "to"));
    json_t *tot = json_pack("{s:s, s:s, s:I}", "vm", "TOTAL", "vm_id", "",
                            "seconds", (json_int_t)secs);
    put_money(tot, "amount", charges, sym);
    json_array_append_new(rows, tot);
    print_rows(rows, "vm,vm_id,seconds,amount");
    if (json_array_size(crows)) {
        printf("\nCredits\n");
        json_t *ct = json_pack("{s:s, s:s, s:s}", "time", "TOTAL", "memo", "",
                               "tx", "");
        put_money(ct, "amount", credits, sym);
        json_array_append_new(crows, ct);
        print_rows(crows, "time,memo,amount,tx");
    }
    putchar('\n');
    _cleanup_free_ char *o = money_format(opening, sym);
    _cleanup_free_ char *cr = money_format(credits, sym);
    _cleanup_free_ char *ch = money_format(charges, sym);
    _cleanup_free_ char *ad = money_format(adjust, sym);
    _cleanup_free_ char *cl = money_format(closing, sym);
    const char *const sum[] = { "opening balance", o, "credits", cr,
                                "charges", ch, "adjustments", ad,
                                "closing balance", cl };
    print_summary(sum, ARRAY_SIZE(sum));
    return CLI_OK;
}

static int payouts(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *path = NULL;
    int r = statement_path(cli_verb_find("payouts"), a, "/v1/payouts", &path);
    if (r != 0)
        return r;
    json_auto_t *pay = NULL;
    if (cli_call(c, "GET", path, NULL, &pay) != 0)
        return CLI_FAIL;
    const char *sym = currency(pay);
    int64_t gross = 0, fees = 0, net = 0, adjust = 0, other = 0, opening = 0,
            closing = 0;
    if (!amount_of(pay, "gross", &gross) || !amount_of(pay, "fees", &fees) ||
        !amount_of(pay, "net", &net) || !amount_of(pay, "adjustments", &adjust) ||
        !amount_of(pay, "other", &other) ||
        !amount_of(pay, "opening_balance", &opening) ||
        !amount_of(pay, "closing_balance", &closing))
        return cli_fail("payouts: the answer lacks its totals");
    int64_t lg = 0, lf = 0, ln = 0, secs = 0;
    json_auto_t *rows = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(pay, "lines"), i, it) {
        int64_t g = 0, f = 0, n = 0;
        amount_of(it, "gross", &g);
        amount_of(it, "fee", &f);
        amount_of(it, "net", &n);
        money_add(lg, g, &lg);
        money_add(lf, f, &lf);
        money_add(ln, n, &ln);
        secs += json_integer_value(json_object_get(it, "seconds"));
        json_t *nn = json_object_get(it, "node_name");
        json_t *row = json_pack("{s:O?, s:O?, s:O?}", "node",
                                json_is_string(nn) ? nn
                                                   : json_object_get(it, "node_id"),
                                "vm_id", json_object_get(it, "vm_id"),
                                "seconds", json_object_get(it, "seconds"));
        put_money(row, "gross", g, sym);
        put_money(row, "fee", f, sym);
        put_money(row, "net", n, sym);
        json_array_append_new(rows, row);
    }
    if (lg != gross)
        return mismatch("payouts gross", lg, gross, sym);
    if (lf != fees)
        return mismatch("payouts fees", lf, fees, sym);
    if (ln != net)
        return mismatch("payouts net", ln, net, sym);
    int64_t want;
    if (money_add(net, fees, &want) < 0 || want != gross)
        return mismatch("payouts net + fees", want, gross, sym);
    if (money_add(opening, net, &want) < 0 || money_add(want, adjust, &want) < 0 ||
        money_add(want, other, &want) < 0 || want != closing)
        return mismatch("payouts balance", want, closing, sym);
    if (c->json) {
        cli_print_json(pay);
        return CLI_OK;
    }
    _cleanup_free_ char *who = statement_who(c, a, str(pay, "account_id"));
    printf("Payouts %s for %s (%s to %s)\n\n", str(pay, "period"), who,
           str(pay, "from"), str(pay, "to"));
    json_t *tot = json_pack("{s:s, s:s, s:I}", "node", "TOTAL", "vm_id", "",
                            "seconds", (json_int_t)secs);
    put_money(tot, "gross", gross, sym);
    put_money(tot, "fee", fees, sym);
    put_money(tot, "net", net, sym);
    json_array_append_new(rows, tot);
    print_rows(rows, "node,vm_id,seconds,gross,fee,net");
    putchar('\n');
    _cleanup_free_ char *o = money_format(opening, sym);
    _cleanup_free_ char *g = money_format(gross, sym);
    _cleanup_free_ char *f = money_format(fees, sym);
    _cleanup_free_ char *n = money_format(net, sym);
    _cleanup_free_ char *ad = money_format(adjust, sym);
    _cleanup_free_ char *ot = money_format(other, sym);
    _cleanup_free_ char *cl = money_format(closing, sym);
    const char *const sum[] = { "opening balance", o, "gross", g,
                                "platform fees", f, "net earned", n,
                                "adjustments", ad, "other", ot,
                                "closing balance", cl };
    print_summary(sum, ARRAY_SIZE(sum));
    return CLI_OK;
}

/* ---- the ledger ---- */

/* Per ledger account: debits (negative entries), credits, net. */
struct ledger_sum {
    json_t *by_account; /* account -> [debits, credits] (integers) */
};

static void ledger_sum_add(struct ledger_sum *s, const char *account,
                           int64_t amount)
{
    json_t *pair = json_object_get(s->by_account, account);
    if (!pair) {
        pair = json_pack("[I, I]", (json_int_t)0, (json_int_t)0);
        json_object_set_new(s->by_account, account, pair);
    }
    size_t k = amount < 0 ? 0 : 1;
    int64_t cur = (int64_t)json_integer_value(json_array_get(pair, k));
    json_array_set_new(pair, k, json_integer((json_int_t)(cur + amount)));
}

static int ledger(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("ledger");
    const char *lim = cli_flag(a, "limit"), *acct = cli_flag(a, "account");
    int64_t limit = 100;
    if (lim && parse_int64(lim, 1, 1000000, &limit) < 0)
        return cli_usage(v, "invalid --limit '%s' (1..1000000)", lim);
    /* Names for the accounts the entries speak of (by id). */
    json_auto_t *accts = NULL, *names = json_object();
    if (cli_list_all(c, "/v1/accounts", SIZE_MAX, &accts) != 0)
        return CLI_FAIL;
    size_t i;
    json_t *it;
    json_array_foreach(accts, i, it)
        json_object_set(names, str(it, "id"), json_object_get(it, "name"));
    _cleanup_free_ char *acct_id = NULL;
    if (acct) {
        if (startswith(acct, "hub:")) {
            acct_id = xstrdup(acct);
        } else {
            json_array_foreach(accts, i, it)
                if (streq(str(it, "name"), acct) || streq(str(it, "id"), acct))
                    acct_id = xstrdup(str(it, "id"));
            if (!acct_id)
                return cli_fail("no account '%s'", acct);
        }
    }
    /* The symbol: any account's balance answer carries it. */
    json_auto_t *any = NULL, *txs = NULL;
    const char *sym = MONEY_DEFAULT_SYMBOL;
    if (json_array_size(accts)) {
        _cleanup_free_ char *bp = path_of(
            "/v1/accounts/", str(json_array_get(accts, 0), "id"), "/balance");
        if (cli_call(c, "GET", bp, NULL, &any) != 0)
            return CLI_FAIL;
        sym = currency(any);
    }
    _cleanup_free_ char *esc = acct_id ? cli_escape(acct_id) : NULL;
    _cleanup_free_ char *lp = esc ? xasprintf("/v1/ledger?account=%s", esc)
                                  : xstrdup("/v1/ledger");
    if (cli_list_all(c, lp, SIZE_MAX, &txs) != 0)
        return CLI_FAIL;
    /* Totals cover every transaction; the table shows the last `limit`. */
    struct ledger_sum s = { json_object() };
    int64_t all = 0;
    json_array_foreach(txs, i, it) {
        size_t k;
        json_t *en;
        int64_t txsum = 0;
        json_array_foreach(json_object_get(it, "entries"), k, en) {
            int64_t n = 0;
            if (!amount_of(en, "amount", &n) || money_add(txsum, n, &txsum) < 0) {
                json_decref(s.by_account);
                return cli_fail("ledger: transaction %s has a bad amount",
                                str(it, "id"));
            }
            ledger_sum_add(&s, str(en, "account"), n);
        }
        if (txsum != 0) {
            json_decref(s.by_account);
            _cleanup_free_ char *t = money_format(txsum, sym);
            return cli_fail("ledger: transaction %s does not balance (%s)",
                            str(it, "id"), t);
        }
    }
    size_t total_tx = json_array_size(txs);
    while (json_array_size(txs) > (size_t)limit)
        json_array_remove(txs, 0);
    json_auto_t *totals = json_array();
    const char *account;
    json_t *pair;
    json_object_foreach(s.by_account, account, pair) {
        int64_t d = (int64_t)json_integer_value(json_array_get(pair, 0));
        int64_t cr = (int64_t)json_integer_value(json_array_get(pair, 1));
        int64_t net;
        if (money_add(d, cr, &net) < 0 || money_add(all, net, &all) < 0) {
            json_decref(s.by_account);
            return cli_fail("ledger: totals overflow");
        }
        const char *name = json_string_value(json_object_get(names, account));
        json_t *t = json_pack("{s:s, s:s}", "account", account, "name",
                              name ? name : account);
        json_object_set_new(t, "debits_nano", json_integer((json_int_t)-d));
        json_object_set_new(t, "credits_nano", json_integer((json_int_t)cr));
        json_object_set_new(t, "net_nano", json_integer((json_int_t)net));
        put_money(t, "debits", -d, NULL);
        put_money(t, "credits", cr, NULL);
        put_money(t, "net", net, NULL);
        json_array_append_new(totals, t);
    }
    json_decref(s.by_account);
    /* Transactions come whole, so even one account's view sums to zero. */
    if (all != 0) {
        _cleanup_free_ char *t = money_format(all, sym);
        return cli_fail("ledger: entries sum to %s, not zero", t);
    }
    if (c->json) {
        json_auto_t *out = json_pack("{s:O?, s:I, s:O?, s:I, s:s}", "items", txs,
                                     "transactions", (json_int_t)total_tx,
                                     "totals", totals, "sum_nano",
                                     (json_int_t)all, "currency", sym);
        cli_print_json(out);
        return CLI_OK;
    }
    json_auto_t *rows = json_array();
    json_array_foreach(txs, i, it) {
        size_t k;
        json_t *en;
        _cleanup_free_ char *detail = NULL;
        const char *memo = str(it, "memo");
        if (*memo)
            detail = xstrdup(memo);
        else if (json_is_string(json_object_get(it, "vm_id")))
            detail = xasprintf("%lld s of VM %.8s",
                               (long long)json_integer_value(
                                   json_object_get(it, "seconds")),
                               str(it, "vm_id"));
        else
            detail = xstrdup("");
        json_array_foreach(json_object_get(it, "entries"), k, en) {
            int64_t n = 0;
            amount_of(en, "amount", &n);
            json_t *name = json_object_get(names, str(en, "account"));
            _cleanup_free_ char *txid = xasprintf("%.8s", str(it, "id"));
            json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:s}", "time",
                                    k ? "" : str(it, "time"), "kind",
                                    k ? "" : str(it, "kind"), "tx",
                                    k ? "" : txid, "account",
                                    name ? json_string_value(name)
                                         : str(en, "account"),
                                    "detail", k ? "" : detail);
            put_money(row, "amount", n, sym);
            json_array_append_new(rows, row);
        }
    }
    if (total_tx > json_array_size(txs))
        printf("the last %zu of %zu transactions (totals cover all)\n",
               json_array_size(txs), total_tx);
    print_rows(rows, "time,kind,tx,account,amount,detail");
    printf("\nTotals over %zu transactions\n", total_tx);
    json_auto_t *trows = json_array();
    json_array_foreach(totals, i, it) {
        int64_t d = 0, cr = 0, n = 0;
        amount_of(it, "debits", &d);
        amount_of(it, "credits", &cr);
        amount_of(it, "net", &n);
        json_t *row = json_pack("{s:O?}", "account", json_object_get(it, "name"));
        put_money(row, "debits", d, sym);
        put_money(row, "credits", cr, sym);
        put_money(row, "net", n, sym);
        json_array_append_new(trows, row);
    }
    json_t *sumrow = json_pack("{s:s, s:s, s:s}", "account", "SUM", "debits",
                               "", "credits", "");
    _cleanup_free_ char *zero = money_format(all, sym);
    put_text(sumrow, "net", xasprintf("%s (balanced)", zero));
    json_array_append_new(trows, sumrow);
    print_rows(trows, "account,debits,credits,net");
    return CLI_OK;
}

const struct cli_verb cli_billing_verbs[] = {
    { "offer-set", offer_set, 1, 1,
      "vcpu-hour=,mem-gib-hour=,disk-gib-month=,gpu-hour=*,port-hour=",
      "NODE [--vcpu-hour AMOUNT] [--mem-gib-hour AMOUNT] "
      "[--disk-gib-month AMOUNT] [--gpu-hour [MODEL=]AMOUNT]... "
      "[--port-hour AMOUNT]",
      "set a node's prices in tokens (provider or admin); prices not given "
      "keep their value" },
    { "offer-show", offer_show, 1, 1, "", "NODE",
      "show a node's prices (its offer, or the default offer)" },
    { "credit", credit, 2, 2, "memo=", "ACCOUNT AMOUNT --memo TEXT",
      "credit tokens to an account (admin)" },
    { "balance", balance, 0, 1, "", "[ACCOUNT]",
      "an account's token balance (an admin without ACCOUNT: every account)" },
    { "usage", usage_list, 0, 0, "vm=,from=,to=",
      "[--vm NAME] [--from DATE --to DATE]",
      "metered seconds and charges per VM (DATE: YYYY-MM-DD, --to inclusive, "
      "or YYYY-MM-DDTHH:MM:SSZ)" },
    { "invoice", invoice, 0, 0, "period=,account=",
      "--period YYYY-MM [--account NAME]",
      "a tenant's statement for a month: charges per VM, credits, balances" },
    { "payouts", payouts, 0, 0, "period=,account=",
      "--period YYYY-MM [--account NAME]",
      "a provider's earnings for a month: gross, platform fee and net" },
    { "ledger", ledger, 0, 0, "account=,limit=", "[--account NAME] [--limit N]",
      "the double-entry ledger with totals per account (admin)" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
