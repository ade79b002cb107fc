-- What a booking's two notification rows cost Postgres with their webhook queued
-- (`webhook_state = 'pending'`: an entry in the partial index of due webhooks) and for the
-- inbox only (`'none'`: no such entry), issue 14, goal 2. Run against an empty database
-- with the app's migrations applied:
--
--   createdb -h 127.0.0.1 -U postgres notify_ab
--   for f in persistence/migrations/postgres/*.sql; do psql -h 127.0.0.1 -U postgres -d notify_ab -q -f $f; done
--   psql -h 127.0.0.1 -U postgres -d notify_ab -f benches/sql/notification_state.sql
--   dropdb -h 127.0.0.1 -U postgres notify_ab
--
-- 200,000 notification rows first (half of each state), then four blocks of 1,000
-- statements of 20 rows each (10 bookings, the size of a journal batch), alternating
-- 'pending' and 'none'. Each block is one transaction, so the times are the statements'
-- own work, without commits or round trips. Divide each time by 20,000 rows (10,000
-- bookings).
\set QUIET on
INSERT INTO notifications (recipient_role, recipient_id, kind, consultation_id, created_at,
    webhook_state, webhook_attempts, webhook_next_at)
SELECT CASE g % 2 WHEN 0 THEN 'patient' ELSE 'doctor' END, g % 5000,
    'consultation_scheduled', g / 2, now(), CASE g % 4 WHEN 0 THEN 'none' ELSE 'pending' END,
    0, now()
FROM generate_series(1, 200000) g;
VACUUM ANALYZE;

-- `batches` inserts of 20 rows in `state`, as the store's notification insert writes them.
CREATE FUNCTION pg_temp.notify(batches int, state text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..batches LOOP
        INSERT INTO notifications (recipient_role, recipient_id, kind, consultation_id,
            created_at, webhook_state, webhook_attempts, webhook_next_at)
        SELECT r.role, CASE r.n WHEN 1 THEN u.patient ELSE u.doctor END, u.kind, u.id, u.at,
            state, 0, u.at
        FROM UNNEST(array_fill('consultation_scheduled'::text, ARRAY[10]),
            ARRAY(SELECT i * 10 + g FROM generate_series(1, 10) g),
            array_fill(now(), ARRAY[10]),
            ARRAY(SELECT (random() * 100000)::bigint FROM generate_series(1, 10)),
            ARRAY(SELECT (random() * 1000)::bigint FROM generate_series(1, 10)))
            WITH ORDINALITY AS u(kind, id, at, patient, doctor, ord)
        CROSS JOIN (VALUES (1, 'patient'), (2, 'doctor')) AS r(n, role)
        ORDER BY u.ord, r.n;
    END LOOP;
END $$;

\timing on
\echo 'pending (queued for webhooks), 20,000 rows'
SELECT pg_temp.notify(1000, 'pending');
\echo 'none (inbox only), 20,000 rows'
SELECT pg_temp.notify(1000, 'none');
\echo 'pending (queued for webhooks), 20,000 rows'
SELECT pg_temp.notify(1000, 'pending');
\echo 'none (inbox only), 20,000 rows'
SELECT pg_temp.notify(1000, 'none');
