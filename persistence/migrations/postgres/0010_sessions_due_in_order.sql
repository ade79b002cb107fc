-- The session worker's poll (`WHERE status = 'pending' AND next_attempt_at <= now ORDER BY
-- next_attempt_at, consultation_id LIMIT n`) reads this index in order and stops after n
-- rows. The partial index it replaces held `next_attempt_at` only, so the poll read every
-- due row and sorted them: with a backlog of 40,000 sessions (after a burst of bookings),
-- about 15 ms per poll. Settled rows have entries too, outside the `status = 'pending'`
-- range the poll reads.
DROP INDEX IF EXISTS sessions_due;
CREATE INDEX sessions_due ON sessions (status, next_attempt_at, consultation_id);
