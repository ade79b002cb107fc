-- Idempotency keys of bookings, written in the booking's own journal transaction, so a
-- repeat after a crash finds the first answer. The key belongs to the patient: the
-- primary key is the second guard against a double booking (a batch that would store the
-- same (patient, key) twice is refused whole). `fingerprint` is a SHA-256 of the request
-- (never the request's medical text itself). Rows expire after 24 h and are purged in
-- bounded batches by `expires_at`.
CREATE TABLE idempotency_keys (
    patient_id      BIGINT      NOT NULL,
    key             TEXT        NOT NULL,
    fingerprint     TEXT        NOT NULL,
    consultation_id BIGINT      NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (patient_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
