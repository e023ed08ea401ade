-- The job-log schema: the seed's SQLite schema, table for table and index for index, plus the
-- composite index the seed lists as its first optimisation. Applied at every start; every
-- statement is idempotent, so a database created by the Rails migrations is accepted as it is.
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
CREATE INDEX IF NOT EXISTS index_job_logs_on_status_and_created_at ON job_logs(status, created_at);

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

-- One row, rewritten by every readiness probe: proof that a real write reaches the file.
-- (Not part of the Rails schema; Rails ignores it.)
CREATE TABLE IF NOT EXISTS service_heartbeat (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  beat_at DATETIME NOT NULL
);
