-- Consult Scheduler schema, Postgres flavour. Same logical schema as migrations/sqlite.

CREATE TABLE doctors (
    id                    BIGSERIAL   PRIMARY KEY,
    name                  TEXT        NOT NULL,
    specialty             TEXT        NOT NULL,
    timezone              TEXT        NOT NULL,
    slot_minutes          INTEGER     NOT NULL,
    -- WeeklySchedule as JSON (the seed's shape).
    availability_schedule TEXT        NOT NULL,
    is_available          BOOLEAN     NOT NULL,
    is_approved           BOOLEAN     NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);

-- The source of truth: one row per doctor event, seq contiguous from 1 per doctor.
-- No foreign key to doctors here or on consultations, on purpose: a foreign-key check locks
-- the referenced doctor row (FOR KEY SHARE) on every insert, which would put a row lock back
-- on the booking path, and measured ~30% of Postgres booking throughput. The engine only
-- journals for doctors it loaded from this database.
CREATE TABLE journal (
    doctor_id   BIGINT      NOT NULL,
    seq         BIGINT      NOT NULL CHECK (seq >= 1),
    kind        TEXT        NOT NULL,
    -- DoctorEvent::encode(): a format version byte, then JSON. No medical text.
    payload     BYTEA       NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (doctor_id, seq)
);

-- Projection of the journal that queries read. Ids are assigned by the engine.
CREATE TABLE consultations (
    id                  BIGINT      PRIMARY KEY,
    reference           TEXT        NOT NULL UNIQUE,
    doctor_id           BIGINT      NOT NULL,
    patient_id          BIGINT      NOT NULL,
    scheduled_at        TIMESTAMPTZ NOT NULL,
    duration_minutes    INTEGER     NOT NULL,
    status              TEXT        NOT NULL,
    consultation_mode   TEXT        NOT NULL,
    consult_mode        TEXT        NOT NULL,
    session_status      TEXT        NOT NULL,
    reason              TEXT,
    symptoms            TEXT,
    medical_history     TEXT,
    allergies           TEXT,
    current_medications TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    cancelled_at        TIMESTAMPTZ
);

-- The second guard against double booking (the doctor actor is the first).
CREATE UNIQUE INDEX consultations_one_active_per_start
    ON consultations (doctor_id, scheduled_at)
    WHERE status IN ('pending', 'scheduled');
CREATE INDEX consultations_by_patient ON consultations (patient_id, scheduled_at);
CREATE INDEX consultations_by_doctor ON consultations (doctor_id, scheduled_at);

-- Latest snapshot per doctor and the journal seq it covers.
CREATE TABLE snapshots (
    doctor_id BIGINT      PRIMARY KEY REFERENCES doctors (id),
    seq       BIGINT      NOT NULL,
    blob      BYTEA       NOT NULL,
    taken_at  TIMESTAMPTZ NOT NULL
);
