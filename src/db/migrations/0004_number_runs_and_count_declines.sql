ALTER TABLE "jobs" DROP CONSTRAINT "jobs_attempt_within_limit";--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "declined_attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_attempt_within_limit" CHECK ("jobs"."attempt" >= 0 and "jobs"."attempt" - "jobs"."declined_attempts" <= "jobs"."max_attempts");