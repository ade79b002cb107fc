-- Outboxes written in the booking's own journal transaction (see the Postgres flavour).

CREATE TABLE sessions (
    consultation_id     INTEGER PRIMARY KEY,
    status              TEXT    NOT NULL,
    attempts            INTEGER NOT NULL,
    next_attempt_at     TEXT    NOT NULL,
    last_error          TEXT,
    provider            TEXT,
    provider_session_id TEXT,
    doctor_join         BLOB,
    patient_join        BLOB,
    expires_at          TEXT,
    updated_at          TEXT    NOT NULL
) STRICT;
CREATE INDEX sessions_due ON sessions (next_attempt_at) WHERE status = 'pending';

CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_role   TEXT    NOT NULL,
    recipient_id     INTEGER NOT NULL,
    kind             TEXT    NOT NULL,
    consultation_id  INTEGER NOT NULL,
    created_at       TEXT    NOT NULL,
    read_at          TEXT,
    webhook_state    TEXT    NOT NULL,
    webhook_attempts INTEGER NOT NULL,
    webhook_next_at  TEXT    NOT NULL
) STRICT;
CREATE INDEX notifications_inbox ON notifications (recipient_role, recipient_id, id);
CREATE INDEX notifications_webhooks_due ON notifications (webhook_next_at)
    WHERE webhook_state = 'pending';
