-- The planner's estimate of a label filter (labels @> '{"team":"team-07"}') comes from the
-- histogram ANALYZE keeps of whole label objects: jsonb has no per-key statistics. With the
-- default 100 entries, a label on ~1 % of jobs is matched by 0, 1 or 2 of them depending on
-- ANALYZE's sample, and an estimate of ~0 rows sends the newest-first listing to the GIN index,
-- reading and sorting every job with the label (15-50 ms on 1,000,000 jobs) instead of walking
-- the created_at index to the first page (~2 ms). 1,000 entries resolve labels down to ~0.1 %,
-- below which the GIN index is the right plan anyway (ADR 0047). ANALYZE then samples 300,000
-- rows of jobs instead of 30,000.
ALTER TABLE jobs ALTER COLUMN labels SET STATISTICS 1000;
ANALYZE jobs (labels);
