-- Command runs (issue 9, ADR 0031) record how their process ended and how much it printed; the
-- output itself is in the object store. NULL for webhook and Kafka runs. Added to the
-- partitioned parent, so every partition (and the default one) gets them.
ALTER TABLE job_runs
    ADD COLUMN exit_code integer,
    ADD COLUMN signal integer,
    ADD COLUMN output_bytes bigint,
    ADD COLUMN output_truncated boolean;
