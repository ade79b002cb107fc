-- The reference is a function of the id (`CONS-` + the id permuted into 6 characters, a
-- bijection: `reference_for` in the engine's model), so the primary key already makes it
-- unique. Its own unique index cost every booking one more btree insertion and nothing
-- reads consultations by reference. (SQLite keeps its index: dropping an inline UNIQUE
-- there means rebuilding the table, and its cost is not on a shared server.)
ALTER TABLE consultations DROP CONSTRAINT IF EXISTS consultations_reference_key;
