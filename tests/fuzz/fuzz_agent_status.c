/* The agent contract, controller side: a node's POST /v1/agent/status and
 * /v1/agent/register bodies as the contract's decoders read them
 * (api/agentmsg.c, agent_status_decode in controller/h_agent.c), what they
 * accept encoding to a body they accept again unchanged, the usage samples
 * a status carries as the billing core ingests them (billing/usage.c), and
 * the join token of a register body (api/jointoken.c). */
#include "tests/fuzz/fuzz.h"
#include "api/jointoken.h"
#include "billing/usage.h"
#include "controller/handlers.h"

/* Samples as the decoder admits them (api/agentmsg.c): seq >= 1,
 * 0 <= start <= end <= AGENT_SAMPLE_TIME_MAX; they go to one usage state. */
static void ingest(const struct am_sample *samples, size_t n)
{
    struct usage_vm u = USAGE_VM_INIT;
    usage_vm_observe(&u, 1000, 60);
    for (size_t i = 0; i < n; i++) {
        const struct am_sample *s = &samples[i];
        struct usage_sample smp = { s->seq, s->start, s->end };
        if (s->refused)
            continue;
        if (smp.seq < 1 || smp.start < 0 || smp.end < smp.start ||
            smp.end > AGENT_SAMPLE_TIME_MAX)
            abort(); /* the decoder let a malformed sample through */
        (void)usage_vm_sample(&u, &smp);
        usage_vm_observe(&u, smp.end, 60);
        if (i % 7 == 6)
            usage_vm_settle(&u, smp.start);
    }
    usage_vm_observe_stop(&u);
    if (usage_vm_billable(&u) < 0 || usage_vm_capped(&u) < 0)
        abort(); /* seconds only ever add up */
    json_auto_t *j = usage_vm_to_json(&u);
    struct usage_vm back = USAGE_VM_INIT;
    if (usage_vm_from_json(j, &back) < 0 ||
        usage_vm_billable(&back) != usage_vm_billable(&u) ||
        usage_vm_claimed(&back) != usage_vm_claimed(&u))
        abort(); /* what the store keeps must read back the same */
    usage_vm_free(&back);
    usage_vm_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_auto_t *b = fuzz_json(data, size);
    if (!b)
        return 0;
    struct jerr e = { 0 };
    struct am_status st;
    if (agent_status_decode(b, &st, &e) < 0) {
        if (!e.field || !e.detail)
            abort(); /* the problem names the field and the reason */
        jerr_clear(&e);
    } else {
        json_auto_t *enc = am_status_encode(&st);
        struct am_status again;
        if (am_status_decode(enc, &again, &e) < 0)
            abort(); /* what the encoder writes, the decoder takes */
        json_auto_t *enc2 = am_status_encode(&again);
        if (!json_equal(enc, enc2))
            abort(); /* and it reads back the same */
        am_status_clear(&again);
        ingest(st.samples, st.n_samples);
        am_status_clear(&st);
    }
    struct am_register reg;
    if (am_register_decode(b, &reg, &e) < 0) {
        if (!e.field || !e.detail)
            abort();
        jerr_clear(&e);
    } else {
        json_auto_t *enc = am_register_encode(&reg);
        struct am_register again;
        if (am_register_decode(enc, &again, &e) < 0)
            abort();
        json_auto_t *enc2 = am_register_encode(&again);
        if (!json_equal(enc, enc2))
            abort();
        am_register_clear(&again);
        am_register_clear(&reg);
    }
    const char *tok = json_str(b, "token");
    char secret[JOINTOKEN_SECRET_HEX + 1], ca[JOINTOKEN_CA_HEX + 1];
    if (tok && jointoken_parse(tok, secret, ca)) {
        _cleanup_free_ char *again = jointoken_format(secret, ca);
        if (!streq(again, tok))
            abort(); /* one token, one spelling */
    }
    return 0;
}
