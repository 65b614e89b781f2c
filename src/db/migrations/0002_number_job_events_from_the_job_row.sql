-- Number each job's events from a counter on the job row, taken by the UPDATE that makes the change:
-- it sees the row as the last writer left it, where a max(seq) + 1 read in the same statement sees
-- only what had committed when the statement began (two racing changes took the same number).
ALTER TABLE "jobs" ADD COLUMN "event_seq" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
-- Jobs stored before this migration continue their numbering after the events they have.
UPDATE "jobs" SET "event_seq" = coalesce((SELECT max("seq") FROM "job_events" WHERE "job_events"."job_id" = "jobs"."id"), 0);
