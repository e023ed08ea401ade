-- The job-log schema on PostgreSQL (DATABASE_URL=postgresql://…): the seed's tables as Rails'
-- PostgreSQL migrations make them (bigserial ids, timestamp(6) in UTC, the same indexes and
-- foreign key), plus what the service adds: commit-ordered ids, the per-status counts, the
-- composite index and the trigram search index. Applied at every start in one transaction
-- (store/postgres/schema.py), every statement idempotent, so a database created by the Rails
-- migrations is adopted as it is. The two indexes over existing rows are not built here: they
-- are created CONCURRENTLY afterwards, never blocking the Rails app's writes.
--
-- Conventions shared with the Rails app (as in SQLite mode):
--   status      integer enum: pending=0, processing=1, error=2, success=3
--   timestamps  timestamp(6) without time zone, in UTC

CREATE TABLE IF NOT EXISTS job_logs (
  id bigserial PRIMARY KEY,
  name character varying NOT NULL,
  status integer NOT NULL DEFAULT 0,
  created_at timestamp(6) without time zone NOT NULL,
  updated_at timestamp(6) without time zone NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS index_job_logs_on_name ON job_logs (name);
CREATE INDEX IF NOT EXISTS index_job_logs_on_status ON job_logs (status);
CREATE INDEX IF NOT EXISTS index_job_logs_on_created_at ON job_logs (created_at);

CREATE TABLE IF NOT EXISTS job_log_details (
  id bigserial PRIMARY KEY,
  job_log_id bigint NOT NULL REFERENCES job_logs (id),
  message text NOT NULL,
  created_at timestamp(6) without time zone NOT NULL,
  updated_at timestamp(6) without time zone NOT NULL
);

CREATE INDEX IF NOT EXISTS index_job_log_details_on_job_log_id
  ON job_log_details (job_log_id);
CREATE INDEX IF NOT EXISTS index_job_log_details_on_created_at
  ON job_log_details (created_at);

-- Ids in commit order. A sequence hands out its values when rows are inserted, but
-- transactions commit in any order: a reader following `id > cursor` would pass an id whose
-- transaction commits later and never read it. Every inserting transaction — this service's,
-- the Rails app's, anyone's — takes this transaction-scoped lock at its first insert and
-- only then takes its ids, so ids rise in the order transactions commit (the lock is held to
-- the commit). Writers are serialised from their first insert to their commit; nothing else
-- waits. The column's default has already drawn a value by then: ids leave gaps, never
-- disorder. Lock key: (0x4A4C, 1), 'JL' and the first of the service's advisory locks.
CREATE OR REPLACE FUNCTION job_log_commit_ordered_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(19020, 1);
  NEW.id := nextval(TG_ARGV[0]::regclass);
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER job_logs_commit_ordered_id
  BEFORE INSERT ON job_logs
  FOR EACH ROW EXECUTE FUNCTION job_log_commit_ordered_id('job_logs_id_seq');

CREATE OR REPLACE TRIGGER job_log_details_commit_ordered_id
  BEFORE INSERT ON job_log_details
  FOR EACH ROW EXECUTE FUNCTION job_log_commit_ordered_id('job_log_details_id_seq');

-- How many job logs have each status, kept by triggers for every writer (see schema.sql).
-- store/postgres/schema.py fills it in the transaction that creates it.
CREATE TABLE IF NOT EXISTS job_log_counts (
  status integer PRIMARY KEY,
  n bigint NOT NULL
);

CREATE OR REPLACE FUNCTION job_log_counts_keep() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    UPDATE job_log_counts SET n = n - 1 WHERE status = OLD.status;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO job_log_counts (status, n) VALUES (NEW.status, 1)
      ON CONFLICT (status) DO UPDATE SET n = job_log_counts.n + 1;
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER job_log_counts_after_insert_or_delete
  AFTER INSERT OR DELETE ON job_logs
  FOR EACH ROW EXECUTE FUNCTION job_log_counts_keep();

CREATE OR REPLACE TRIGGER job_log_counts_after_update
  AFTER UPDATE OF status ON job_logs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION job_log_counts_keep();

-- Substring search in detail messages: pg_trgm (a trusted extension: the database's owner
-- may create it) with a GIN index over the messages, built CONCURRENTLY by schema.py.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The sync's run lock is a lease (store/postgres/lease.py): a session advisory lock held by a
-- session of its own. Each time a node takes it, the epoch rises; a run's final writes check
-- that the epoch is still theirs, so a node that lost the lease without noticing (hung, cut
-- off) can write nothing that counts.
CREATE TABLE IF NOT EXISTS sync_lease (
  id integer PRIMARY KEY CHECK (id = 1),
  epoch bigint NOT NULL,
  node text,
  taken_at timestamp(6) without time zone
);
INSERT INTO sync_lease (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

-- The scheduled slots a node has claimed: every node ticks on the same grid, and the first to
-- claim a slot runs it; a slot runs at most once.
CREATE TABLE IF NOT EXISTS sync_ticks (
  slot timestamp(6) without time zone PRIMARY KEY,
  node text NOT NULL,
  claimed_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- The days (UTC) whose retention purge a node has claimed: one node purges per day.
CREATE TABLE IF NOT EXISTS purge_days (
  day date PRIMARY KEY,
  node text NOT NULL,
  claimed_at timestamp(6) without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
