-- When the current plan of a job began: the issue time of the edit or resume that made it
-- (NULL: its creation). A firing due before it was owed by an earlier version (ADR 0036) and
-- may end after the edit was applied (a slow call, or statuses behind commands): it is a firing
-- made, not one of the plan's, so the writer neither counts it toward the plan's end nor lets
-- its `skipped` shrink the plan.
ALTER TABLE jobs ADD COLUMN plan_from timestamptz;
