-- Several engine instances on one database: the shard count they agree on, who is alive,
-- who owns which lease shard (with the epoch that fences its writes), and where the next
-- consultation ids come from. Every time in these tables is the database's clock
-- (`now()`), never an instance's, so instances with skewed clocks still agree on expiry.

-- One row (the CHECK on the key allows no second): the shard count every instance must
-- be started with. Written once by the first instance (`prepare_shards`).
CREATE TABLE cluster_config (
    singleton   BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    shard_count INTEGER     NOT NULL CHECK (shard_count > 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Membership: one row per advertised URL (two live processes cannot listen on one), the
-- run that holds it (`incarnation`), and its last heartbeat.
CREATE TABLE cluster_nodes (
    advertise_url TEXT        PRIMARY KEY,
    incarnation   BIGINT      NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL,
    -- When this incarnation first heartbeat.
    started_at    TIMESTAMPTZ NOT NULL
);

-- One row per lease shard (`0 .. shard_count`). The epoch only grows: each takeover adds
-- one, and every fenced journal or snapshot transaction reads its shard's row FOR SHARE
-- with the epoch it was granted, so a takeover (which updates the row) and a write of the
-- old owner cannot both commit. A released lease keeps its epoch and just expires now.
CREATE TABLE shard_leases (
    shard             INTEGER     PRIMARY KEY CHECK (shard >= 0),
    owner_url         TEXT,
    owner_incarnation BIGINT,
    epoch             BIGINT      NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    expires_at        TIMESTAMPTZ NOT NULL,
    CHECK ((owner_url IS NULL) = (owner_incarnation IS NULL))
);

-- One row: the next consultation id no instance has been given. Instances reserve ranges
-- from it (`allocate_consultation_ids`), never from an in-process counter; the range
-- also starts above every id already stored, so ids written before this table existed
-- (a single instance counting from max(id)) are never handed out again.
CREATE TABLE consultation_id_allocator (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    next_id   BIGINT  NOT NULL CHECK (next_id >= 1)
);
INSERT INTO consultation_id_allocator (next_id) VALUES (1);
