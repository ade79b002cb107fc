-- Outbox work claimed by one instance at a time. Reading due sessions or webhooks claims
-- the rows (FOR UPDATE SKIP LOCKED, and their next attempt pushed past the claim period),
-- so other instances skip them while this one works and get them back if it dies. A
-- session's claim also names the claimer: the store that claimed it (one per process,
-- numbered from `outbox_claimers` when it connects) may go on with it whatever its due
-- time, another only once it is due again.
CREATE SEQUENCE outbox_claimers;
ALTER TABLE sessions ADD COLUMN claimed_by BIGINT;
