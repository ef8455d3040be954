-- What each node's provider keeps for itself (the agent's --reserve-*
-- figures, already left out of vcpus, memory_mib and disk_gib), as the
-- node reports them: shown in /metrics next to the capacity offered.
ALTER TABLE nodes ADD COLUMN reserved_vcpus INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN reserved_memory_mib BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN reserved_disk_gib BIGINT NOT NULL DEFAULT 0;
