-- Who each consultation of a multi-patient booking is for: the booker (`consultations.
-- patient_id`) books for family members. One row per such consultation, written in the
-- booking's one transaction together with its consultations; single bookings write none,
-- so the single-booking path is unchanged. Personal data: never journaled, never logged.
CREATE TABLE booking_members (
    consultation_id INTEGER PRIMARY KEY,
    booking_id      INTEGER NOT NULL,
    patient_name    TEXT    NOT NULL,
    relation        TEXT
) STRICT;
CREATE INDEX booking_members_by_booking ON booking_members (booking_id, consultation_id);
