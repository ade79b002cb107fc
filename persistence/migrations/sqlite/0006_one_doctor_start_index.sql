-- One index on (doctor_id, scheduled_at) instead of two. consultations_one_active_per_start
-- (the second guard against a double booking, over active rows) and consultations_by_doctor
-- (a doctor's consultations by time, over every row) had the same key, so every booking
-- inserted it twice. The third key part is 0 for an active consultation and its id (never
-- 0: ids start at 1) for any other: two active rows at one start collide, as before, and a
-- cancelled or finished one never does. Lookups by doctor and time use the first two parts.
CREATE UNIQUE INDEX consultations_by_doctor_start
    ON consultations (doctor_id, scheduled_at,
        (CASE WHEN status IN ('pending', 'scheduled') THEN 0 ELSE id END));
DROP INDEX consultations_one_active_per_start;
DROP INDEX consultations_by_doctor;
