-- Health checks of a VM's services (api/healthcheck.h). spec is the
-- check as hc_spec_to_json writes it (without its id; port, type and
-- action are copies, for the queries); the node runs it
-- and reports its state: 'unknown' until a rise or fall threshold is met
-- (and while the VM is not running), then 'healthy' or 'unhealthy', since
-- `since` (the controller's clock), with the last probe's output.
-- restarts counts the restarts the check's action made while it stayed
-- unhealthy (0 again once healthy), restarted_at the last one.
CREATE TABLE health_checks (
    id           TEXT PRIMARY KEY,
    vm_id        TEXT NOT NULL REFERENCES vms(id),
    port         INTEGER NOT NULL,
    type         TEXT NOT NULL CHECK (type IN ('tcp', 'http', 'udp')),
    action       TEXT NOT NULL CHECK (action IN ('none', 'restart')),
    spec         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'unknown'
                 CHECK (state IN ('unknown', 'healthy', 'unhealthy')),
    since        BIGINT NOT NULL,
    output       TEXT,
    checked_at   BIGINT,
    restarts     INTEGER NOT NULL DEFAULT 0,
    restarted_at BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX health_checks_vm ON health_checks(vm_id);
CREATE INDEX health_checks_state ON health_checks(state);
