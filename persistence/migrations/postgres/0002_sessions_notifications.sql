-- Outboxes written in the booking's own journal transaction.

-- One row per in-app consultation: the session worker's to-do list while `pending`, then
-- the session's provider ids and the sealed (AES-256-GCM) join details of each side.
CREATE TABLE sessions (
    consultation_id     BIGINT      PRIMARY KEY,
    status              TEXT        NOT NULL,
    attempts            INTEGER     NOT NULL,
    next_attempt_at     TIMESTAMPTZ NOT NULL,
    last_error          TEXT,
    provider            TEXT,
    provider_session_id TEXT,
    doctor_join         BYTEA,
    patient_join        BYTEA,
    expires_at          TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_due ON sessions (next_attempt_at) WHERE status = 'pending';

-- One row per (event, recipient): the in-app inbox and the webhook queue. The consultation
-- details are joined when read, so no copy of them (and no medical text) lives here.
CREATE TABLE notifications (
    id               BIGSERIAL   PRIMARY KEY,
    recipient_role   TEXT        NOT NULL,
    recipient_id     BIGINT      NOT NULL,
    kind             TEXT        NOT NULL,
    consultation_id  BIGINT      NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    read_at          TIMESTAMPTZ,
    -- pending | delivered | failed
    webhook_state    TEXT        NOT NULL,
    webhook_attempts INTEGER     NOT NULL,
    webhook_next_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX notifications_inbox ON notifications (recipient_role, recipient_id, id);
CREATE INDEX notifications_webhooks_due ON notifications (webhook_next_at)
    WHERE webhook_state = 'pending';
