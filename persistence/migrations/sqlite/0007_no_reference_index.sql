-- The reference is a function of the id (`CONS-` + the id permuted into 6 characters, a
-- bijection: `reference_for` in the engine's model), so the primary key already makes it
-- unique, and nothing reads consultations by reference. Its inline UNIQUE cost every
-- booking an insertion at a random place of one more index (Postgres dropped its index in
-- its migration 0008). SQLite cannot drop an inline constraint, so the table is rebuilt
-- without it; no other table refers to it.
CREATE TABLE consultations_rebuilt (
    id                  INTEGER PRIMARY KEY,
    reference           TEXT    NOT NULL,
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
INSERT INTO consultations_rebuilt (id, reference, doctor_id, patient_id, scheduled_at,
    duration_minutes, status, consultation_mode, consult_mode, session_status, reason,
    symptoms, medical_history, allergies, current_medications, created_at, updated_at,
    cancelled_at)
SELECT id, reference, doctor_id, patient_id, scheduled_at, duration_minutes, status,
    consultation_mode, consult_mode, session_status, reason, symptoms, medical_history,
    allergies, current_medications, created_at, updated_at, cancelled_at
FROM consultations;
DROP TABLE consultations;
ALTER TABLE consultations_rebuilt RENAME TO consultations;
-- The indexes went with the old table (see 0006 for the first).
CREATE UNIQUE INDEX consultations_by_doctor_start
    ON consultations (doctor_id, scheduled_at,
        (CASE WHEN status IN ('pending', 'scheduled') THEN 0 ELSE id END));
CREATE INDEX consultations_by_patient ON consultations (patient_id, scheduled_at);
