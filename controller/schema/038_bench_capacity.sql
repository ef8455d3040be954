-- The vCPUs a node's last verified benchmark backs (controller/
-- benchmark.c): floor(score x lanes / the hub's --bench-ref). The
-- scheduler places VMs on the node only up to them; NULL until a
-- challenge passed (no cap). A challenge runs one lane per approved vCPU
-- (at least --bench-lanes, at most BENCH_LANES_MAX).
ALTER TABLE node_trust ADD COLUMN bench_vcpus BIGINT;
