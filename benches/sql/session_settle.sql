-- What settling a session costs Postgres, with and without also updating its consultation
-- (issue 14, goal 1). Run against an empty database with the app's migrations applied:
--
--   createdb -h 127.0.0.1 -U postgres settle_ab
--   for f in persistence/migrations/postgres/*.sql; do psql -h 127.0.0.1 -U postgres -d settle_ab -q -f $f; done
--   psql -h 127.0.0.1 -U postgres -d settle_ab -f benches/sql/session_settle.sql
--   dropdb -h 127.0.0.1 -U postgres settle_ab
--
-- 200,000 consultations and pending sessions, then 40,000 sessions settled four times,
-- alternating: the session row and the consultation (as before), the session row only (as
-- now). Each call is one transaction, so the times are the statements' own work, without
-- commits or round trips. Divide each time by 40,000.
\set QUIET on
INSERT INTO consultations SELECT g, 'CONS-' || g, g % 1000, (random() * 100000)::bigint,
    now() + (g / 1000) * interval '30 min', 30, 'scheduled', 'video', 'video', 'pending',
    NULL, NULL, NULL, NULL, NULL, now(), now(), NULL
FROM generate_series(1, 200000) g;
INSERT INTO sessions (consultation_id, status, attempts, next_attempt_at, updated_at)
SELECT g, 'pending', 0, now(), now() FROM generate_series(1, 200000) g;
VACUUM ANALYZE;

-- Settles sessions `first`..`last` one statement at a time, as the store does; with
-- `and_consultation`, also updates each consultation's session_status (the old way).
CREATE FUNCTION pg_temp.settle(first bigint, last bigint, and_consultation boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN first..last LOOP
        UPDATE sessions SET status = 'ready', provider = 'vonage', provider_session_id = 'x',
            expires_at = now(), last_error = NULL, updated_at = now()
            WHERE consultation_id = i AND status = 'pending';
        IF and_consultation THEN
            UPDATE consultations SET session_status = 'ready', updated_at = now() WHERE id = i;
        END IF;
    END LOOP;
END $$;

\timing on
\echo 'session row and consultation, sessions 1-40000'
SELECT pg_temp.settle(1, 40000, true);
\echo 'session row only, sessions 40001-80000'
SELECT pg_temp.settle(40001, 80000, false);
\echo 'session row and consultation, sessions 120001-160000'
SELECT pg_temp.settle(120001, 160000, true);
\echo 'session row only, sessions 80001-120000'
SELECT pg_temp.settle(80001, 120000, false);
