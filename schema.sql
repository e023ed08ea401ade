-- The job-log schema: the seed's SQLite schema, table for table and index for index, plus the
-- runs in (status, created_at) order — the composite index the seed lists as its first
-- optimisation, kept as a table —, the per-status counts and the trigram index of detail
-- messages (all kept by triggers, so every writer — this service, `run-once`, the Rails app,
-- the purge — keeps them right). Applied at every start; every statement is idempotent, so a
-- database created by the Rails migrations is adopted: the tables and indexes it has are left
-- as they are; store/schema.py fills the counts in the transaction that creates them, and the
-- runs by status and the trigram index afterwards, in small batches in the background, so
-- that no other writer ever waits long for the lock. (On a young database it also creates
-- the composite index itself, for the Rails app's queries: a few milliseconds.)
--
-- Conventions shared with the Rails app:
--   status      integer enum: pending=0, processing=1, error=2, success=3
--   timestamps  UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (Rails omits '.ffffff' when it is zero)

CREATE TABLE IF NOT EXISTS job_logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name VARCHAR(255) NOT NULL,
  status INTEGER NOT NULL DEFAULT 0,
  created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL,
  UNIQUE (name)
);

CREATE INDEX IF NOT EXISTS index_job_logs_on_name ON job_logs(name);
CREATE INDEX IF NOT EXISTS index_job_logs_on_status ON job_logs(status);
CREATE INDEX IF NOT EXISTS index_job_logs_on_created_at ON job_logs(created_at);

CREATE TABLE IF NOT EXISTS job_log_details (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_log_id INTEGER NOT NULL,
  message TEXT NOT NULL,
  created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL,
  FOREIGN KEY (job_log_id) REFERENCES job_logs(id)
);

CREATE INDEX IF NOT EXISTS index_job_log_details_on_job_log_id ON job_log_details(job_log_id);
CREATE INDEX IF NOT EXISTS index_job_log_details_on_created_at ON job_log_details(created_at);

-- How many job logs have each status: `total` and the stats read these few rows instead of
-- counting a million (43 ms for GROUP BY status at 1 M logs). A status whose logs are all
-- gone keeps its row with n = 0.
CREATE TABLE IF NOT EXISTS job_log_counts (
  status INTEGER PRIMARY KEY,
  n INTEGER NOT NULL
);

CREATE TRIGGER IF NOT EXISTS job_log_counts_after_insert AFTER INSERT ON job_logs
BEGIN
  INSERT INTO job_log_counts (status, n) VALUES (NEW.status, 1)
    ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER IF NOT EXISTS job_log_counts_after_delete AFTER DELETE ON job_logs
BEGIN
  UPDATE job_log_counts SET n = n - 1 WHERE status = OLD.status;
END;

CREATE TRIGGER IF NOT EXISTS job_log_counts_after_update AFTER UPDATE OF status ON job_logs
WHEN OLD.status IS NOT NEW.status
BEGIN
  UPDATE job_log_counts SET n = n - 1 WHERE status = OLD.status;
  INSERT INTO job_log_counts (status, n) VALUES (NEW.status, 1)
    ON CONFLICT (status) DO UPDATE SET n = n + 1;
END;

-- The runs in (status, created_at, id) order: what an index on job_logs(status, created_at)
-- holds, in a table the triggers below keep, because a table can be filled in batches and an
-- index cannot: CREATE INDEX fills it in one statement, and on a database adopted with a
-- decade of runs every other writer would wait a second or more for it. Every read that
-- filters by status and orders by time reads the runs from here.
CREATE TABLE IF NOT EXISTS job_logs_by_status (
  status INTEGER NOT NULL,
  created_at DATETIME NOT NULL,
  id INTEGER NOT NULL,
  PRIMARY KEY (status, created_at, id)
) WITHOUT ROWID;

-- While the runs of an adopted database are being added to job_logs_by_status (from the
-- oldest up, store/schema.py), this one row says how far: runs with done < id <= upto are
-- not in it yet, and the triggers leave them to the batches. No row: it is complete.
CREATE TABLE IF NOT EXISTS job_logs_by_status_build (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  done INTEGER NOT NULL,
  upto INTEGER NOT NULL
);

CREATE TRIGGER IF NOT EXISTS job_logs_by_status_after_insert AFTER INSERT ON job_logs
WHEN NOT EXISTS (SELECT 1 FROM job_logs_by_status_build WHERE NEW.id > done AND NEW.id <= upto)
BEGIN
  INSERT INTO job_logs_by_status (status, created_at, id)
    VALUES (NEW.status, NEW.created_at, NEW.id);
END;

-- Deleting an entry a pending run does not have yet deletes nothing: no condition needed.
CREATE TRIGGER IF NOT EXISTS job_logs_by_status_after_delete AFTER DELETE ON job_logs
BEGIN
  DELETE FROM job_logs_by_status
    WHERE status = OLD.status AND created_at = OLD.created_at AND id = OLD.id;
END;

CREATE TRIGGER IF NOT EXISTS job_logs_by_status_after_update
AFTER UPDATE OF id, status, created_at ON job_logs
WHEN OLD.id IS NOT NEW.id OR OLD.status IS NOT NEW.status OR OLD.created_at IS NOT NEW.created_at
BEGIN
  DELETE FROM job_logs_by_status
    WHERE status = OLD.status AND created_at = OLD.created_at AND id = OLD.id;
  INSERT INTO job_logs_by_status (status, created_at, id)
    SELECT NEW.status, NEW.created_at, NEW.id
    WHERE NOT EXISTS (
      SELECT 1 FROM job_logs_by_status_build WHERE NEW.id > done AND NEW.id <= upto
    );
END;

-- Substring search in detail messages: an FTS5 trigram index over job_log_details.message
-- (external content: the text is not stored twice). It finds candidates for a query of three
-- characters or more; the store re-checks each with the same test a scan would use.
CREATE VIRTUAL TABLE IF NOT EXISTS job_log_details_search USING fts5(
  message,
  content = 'job_log_details',
  content_rowid = 'id',
  tokenize = 'trigram case_sensitive 0',
  detail = 'none'
);

-- The trigram index of a database adopted with lines in it is built in batches, from the
-- oldest line up (store/schema.py). While it is, this one row says how far: lines with
-- done < id <= upto are not in the index yet; every other line is. The batches index the
-- pending lines and move `done` up in the same transaction; the triggers keep every other
-- line indexed, and leave the pending ones to the batches: adding a pending line twice would
-- list it twice, and an FTS5 'delete' of a line that was never added corrupts the index.
-- No row: the index is complete.
CREATE TABLE IF NOT EXISTS search_index_build (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  done INTEGER NOT NULL,
  upto INTEGER NOT NULL
);

CREATE TRIGGER IF NOT EXISTS job_log_details_search_after_insert
AFTER INSERT ON job_log_details
WHEN NOT EXISTS (SELECT 1 FROM search_index_build WHERE NEW.id > done AND NEW.id <= upto)
BEGIN
  INSERT INTO job_log_details_search (rowid, message) VALUES (NEW.id, NEW.message);
END;

CREATE TRIGGER IF NOT EXISTS job_log_details_search_after_delete
AFTER DELETE ON job_log_details
WHEN NOT EXISTS (SELECT 1 FROM search_index_build WHERE OLD.id > done AND OLD.id <= upto)
BEGIN
  INSERT INTO job_log_details_search (job_log_details_search, rowid, message)
    VALUES ('delete', OLD.id, OLD.message);
END;

CREATE TRIGGER IF NOT EXISTS job_log_details_search_after_update
AFTER UPDATE OF id, message ON job_log_details
BEGIN
  INSERT INTO job_log_details_search (job_log_details_search, rowid, message)
    SELECT 'delete', OLD.id, OLD.message
    WHERE NOT EXISTS (SELECT 1 FROM search_index_build WHERE OLD.id > done AND OLD.id <= upto);
  INSERT INTO job_log_details_search (rowid, message)
    SELECT NEW.id, NEW.message
    WHERE NOT EXISTS (SELECT 1 FROM search_index_build WHERE NEW.id > done AND NEW.id <= upto);
END;

-- One row, rewritten by every readiness probe: proof that a real write reaches the file.
-- (Not part of the Rails schema; Rails ignores it.)
CREATE TABLE IF NOT EXISTS service_heartbeat (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  beat_at DATETIME NOT NULL
);
