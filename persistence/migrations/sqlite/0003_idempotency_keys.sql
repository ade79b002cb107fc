-- Idempotency keys of bookings, written in the booking's own journal transaction (see the
-- Postgres flavour).
CREATE TABLE idempotency_keys (
    patient_id      INTEGER NOT NULL,
    key             TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    consultation_id INTEGER NOT NULL,
    created_at      TEXT    NOT NULL,
    expires_at      TEXT    NOT NULL,
    PRIMARY KEY (patient_id, key)
) STRICT;
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
