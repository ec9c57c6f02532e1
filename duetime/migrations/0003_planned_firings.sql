-- How many firings the loaders have placed in the due-set so far: with max_runs, loading stops
-- at exactly max_runs firings, so a job never fires more often than it may.
ALTER TABLE jobs ADD COLUMN planned_count bigint NOT NULL DEFAULT 0;
