-- A doctor's date overrides (JSON object by local date "YYYY-MM-DD") and booking policy
-- (JSON object), projected from the journal like the weekly schedule. Rows written before
-- these existed read as none.
ALTER TABLE doctors ADD COLUMN date_overrides TEXT NOT NULL DEFAULT '{}';
ALTER TABLE doctors ADD COLUMN booking_policy TEXT NOT NULL DEFAULT '{}';
