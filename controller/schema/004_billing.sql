-- Metering and billing: node offers, deals (prices locked on a VM at
-- placement), per-VM usage state, and the append-only double-entry ledger.
-- Amounts are BIGINT nano-tokens; times BIGINT unix seconds.

CREATE TABLE node_offers (
    node_id         TEXT PRIMARY KEY REFERENCES nodes(id),
    vcpu_hour       BIGINT NOT NULL,
    mem_gib_hour    BIGINT NOT NULL,
    disk_gib_month  BIGINT NOT NULL,
    gpu_hour        BIGINT NOT NULL,
    port_hour       BIGINT NOT NULL,
    gpu_models      TEXT NOT NULL DEFAULT '{}',
    updated_at      BIGINT NOT NULL
);

-- A deal: the offer and the VM's shape frozen when it was placed. The
-- accrual cursor is billed_s: seconds of this deal already posted, counted
-- from base_s (the VM's billable seconds when the deal began).
CREATE TABLE deals (
    id              TEXT PRIMARY KEY,
    vm_id           TEXT NOT NULL REFERENCES vms(id),
    node_id         TEXT NOT NULL REFERENCES nodes(id),
    tenant_id       TEXT NOT NULL REFERENCES accounts(id),
    provider_id     TEXT NOT NULL REFERENCES accounts(id),
    vcpu_hour       BIGINT NOT NULL,
    mem_gib_hour    BIGINT NOT NULL,
    disk_gib_month  BIGINT NOT NULL,
    gpu_hour        BIGINT NOT NULL,
    port_hour       BIGINT NOT NULL,
    vcpus           BIGINT NOT NULL,
    memory_mib      BIGINT NOT NULL,
    disk_gib        BIGINT NOT NULL,
    gpus            BIGINT NOT NULL,
    ports           BIGINT NOT NULL,
    fee_bps         BIGINT NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
    base_s          BIGINT NOT NULL,
    billed_s        BIGINT NOT NULL DEFAULT 0,
    charged         BIGINT NOT NULL DEFAULT 0,
    fees            BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    closed_at       BIGINT
);
CREATE INDEX deals_vm ON deals(vm_id);
CREATE INDEX deals_tenant ON deals(tenant_id);
CREATE INDEX deals_provider ON deals(provider_id);
ALTER TABLE vms ADD COLUMN deal_id TEXT;

-- What the controller knows of a VM's usage: the sequence numbers seen,
-- claimed and observed intervals (JSON, see billing/usage.h) and their
-- cumulative totals.
CREATE TABLE vm_usage (
    vm_id           TEXT PRIMARY KEY REFERENCES vms(id),
    node_id         TEXT NOT NULL,
    state           TEXT NOT NULL,
    billable_s      BIGINT NOT NULL DEFAULT 0,
    claimed_s       BIGINT NOT NULL DEFAULT 0,
    samples         BIGINT NOT NULL DEFAULT 0,
    duplicates      BIGINT NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL
);

-- The ledger: transactions whose entries sum to zero. Never updated or
-- deleted; corrections are reversing transactions. An accrual step of a
-- deal (deal_id, upto_s) is posted at most once.
CREATE TABLE ledger_tx (
    id          TEXT PRIMARY KEY,
    time_s      BIGINT NOT NULL,
    kind        TEXT NOT NULL
        CHECK (kind IN ('accrual', 'credit', 'reversal')),
    memo        TEXT NOT NULL DEFAULT '',
    actor       TEXT,
    vm_id       TEXT,
    deal_id     TEXT,
    seconds     BIGINT NOT NULL DEFAULT 0,
    upto_s      BIGINT,
    reverses    TEXT UNIQUE
);
CREATE UNIQUE INDEX ledger_tx_step ON ledger_tx(deal_id, upto_s);
CREATE INDEX ledger_tx_time ON ledger_tx(time_s, id);

CREATE TABLE ledger_entry (
    tx_id       TEXT NOT NULL REFERENCES ledger_tx(id),
    account     TEXT NOT NULL,
    amount      BIGINT NOT NULL,
    time_s      BIGINT NOT NULL,
    PRIMARY KEY (tx_id, account)
);
CREATE INDEX ledger_entry_account ON ledger_entry(account, time_s);

-- Running sum of each ledger account's entries, kept in the transaction
-- that posts them (always equal to SUM(amount) of its entries).
CREATE TABLE ledger_balances (
    account     TEXT PRIMARY KEY,
    balance     BIGINT NOT NULL
);

-- Low-balance warnings and stops already announced, per tenant.
CREATE TABLE billing_notices (
    account_id  TEXT PRIMARY KEY REFERENCES accounts(id),
    warned_at   BIGINT,
    stopped_at  BIGINT
);
