-- Consult Scheduler schema, SQLite flavour. Same logical schema as migrations/postgres.
--
-- Timestamps are TEXT in RFC 3339 UTC with one fixed format, YYYY-MM-DDTHH:MM:SS.ffffffZ
-- (microseconds, like Postgres), so lexical order is time order and range queries and the
-- unique index on scheduled_at compare correctly. Booleans are INTEGER 0/1.

CREATE TABLE doctors (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    name                  TEXT    NOT NULL,
    specialty             TEXT    NOT NULL,
    timezone              TEXT    NOT NULL,
    slot_minutes          INTEGER NOT NULL,
    -- WeeklySchedule as JSON (the seed's shape).
    availability_schedule TEXT    NOT NULL,
    is_available          INTEGER NOT NULL,
    is_approved           INTEGER NOT NULL,
    created_at            TEXT    NOT NULL,
    updated_at            TEXT    NOT NULL
) STRICT;

-- The source of truth: one row per doctor event, seq contiguous from 1 per doctor.
-- No foreign key to doctors here or on consultations, on purpose: a foreign-key check locks
-- the referenced doctor row (FOR KEY SHARE) on every insert, which would put a row lock back
-- on the booking path, and measured ~30% of Postgres booking throughput. The engine only
-- journals for doctors it loaded from this database.
CREATE TABLE journal (
    doctor_id   INTEGER NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    kind        TEXT    NOT NULL,
    -- DoctorEvent::encode(): a format version byte, then JSON. No medical text.
    payload     BLOB    NOT NULL,
    recorded_at TEXT    NOT NULL,
    PRIMARY KEY (doctor_id, seq)
) STRICT, WITHOUT ROWID;

-- Projection of the journal that queries read. Ids are assigned by the engine.
CREATE TABLE consultations (
    id                  INTEGER PRIMARY KEY,
    reference           TEXT    NOT NULL UNIQUE,
    doctor_id           INTEGER NOT NULL,
    patient_id          INTEGER NOT NULL,
    scheduled_at        TEXT    NOT NULL,
    duration_minutes    INTEGER NOT NULL,
    status              TEXT    NOT NULL,
    consultation_mode   TEXT    NOT NULL,
    consult_mode        TEXT    NOT NULL,
    session_status      TEXT    NOT NULL,
    reason              TEXT,
    symptoms            TEXT,
    medical_history     TEXT,
    allergies           TEXT,
    current_medications TEXT,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    cancelled_at        TEXT
) STRICT;

-- The second guard against double booking (the doctor actor is the first).
CREATE UNIQUE INDEX consultations_one_active_per_start
    ON consultations (doctor_id, scheduled_at)
    WHERE status IN ('pending', 'scheduled');
CREATE INDEX consultations_by_patient ON consultations (patient_id, scheduled_at);
CREATE INDEX consultations_by_doctor ON consultations (doctor_id, scheduled_at);

-- Latest snapshot per doctor and the journal seq it covers.
CREATE TABLE snapshots (
    doctor_id INTEGER PRIMARY KEY REFERENCES doctors (id),
    seq       INTEGER NOT NULL,
    blob      BLOB    NOT NULL,
    taken_at  TEXT    NOT NULL
) STRICT;
