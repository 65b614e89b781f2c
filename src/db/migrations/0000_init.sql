CREATE TYPE "public"."job_event_type" AS ENUM('created', 'assigned', 'started', 'requeued', 'cancel_requested', 'succeeded', 'failed', 'cancelled', 'timed_out');--> statement-breakpoint
CREATE TYPE "public"."job_status" AS ENUM('queued', 'assigned', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out');--> statement-breakpoint
CREATE TYPE "public"."log_stream" AS ENUM('stdout', 'stderr', 'system');--> statement-breakpoint
CREATE TYPE "public"."queue_type" AS ENUM('backlog', 'rework');--> statement-breakpoint
CREATE TABLE "repositories" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"org_id" uuid NOT NULL,
	"name" text NOT NULL,
	"clone_url" text NOT NULL,
	"default_branch" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE TABLE "job_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"job_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"type" "job_event_type" NOT NULL,
	"status" "job_status" NOT NULL,
	"attempt" integer NOT NULL,
	"agent_id" uuid,
	"detail" text,
	"at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"org_id" uuid NOT NULL,
	"repo_id" uuid NOT NULL,
	"queue_type" "queue_type" NOT NULL,
	"prompt" text NOT NULL,
	"status" "job_status" DEFAULT 'queued' NOT NULL,
	"parent_job_id" uuid,
	"labels" text[] DEFAULT '{}'::text[] NOT NULL,
	"attempt" integer DEFAULT 0 NOT NULL,
	"max_attempts" integer DEFAULT 3 NOT NULL,
	"agent_id" uuid,
	"exit_code" integer,
	"failure_reason" text,
	"created_by" text NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"assigned_at" timestamp (3) with time zone,
	"started_at" timestamp (3) with time zone,
	"finished_at" timestamp (3) with time zone,
	"cancel_requested_at" timestamp (3) with time zone,
	"timeouts" jsonb NOT NULL,
	"claim_task_token" text,
	"execute_task_token" text,
	"reported_outcome" jsonb,
	"log_seq_base" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "jobs_attempt_within_limit" CHECK ("jobs"."attempt" >= 0 and "jobs"."attempt" <= "jobs"."max_attempts"),
	CONSTRAINT "jobs_rework_has_parent" CHECK (("jobs"."queue_type" = 'rework') = ("jobs"."parent_job_id" is not null))
);
--> statement-breakpoint
CREATE TABLE "log_lines" (
	"job_id" uuid NOT NULL,
	"seq" bigint NOT NULL,
	"at" timestamp (3) with time zone NOT NULL,
	"stream" "log_stream" NOT NULL,
	"text" text NOT NULL,
	CONSTRAINT "log_lines_pk" PRIMARY KEY("job_id","seq")
);
--> statement-breakpoint
CREATE TABLE "agent_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"org_id" uuid NOT NULL,
	"name" text NOT NULL,
	"prefix" text NOT NULL,
	"secret_hash" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp (3) with time zone,
	"revoked_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE TABLE "agents" (
	"id" uuid PRIMARY KEY NOT NULL,
	"org_id" uuid NOT NULL,
	"token_id" uuid NOT NULL,
	"name" text NOT NULL,
	"version" text,
	"labels" text[] DEFAULT '{}'::text[] NOT NULL,
	"capacity" integer DEFAULT 1 NOT NULL,
	"replica" text,
	"session_id" uuid,
	"connected_at" timestamp (3) with time zone,
	"disconnected_at" timestamp (3) with time zone,
	"last_heartbeat_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE TABLE "workflow_starts" (
	"job_id" uuid PRIMARY KEY NOT NULL,
	"not_before" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text
);
--> statement-breakpoint
ALTER TABLE "job_events" ADD CONSTRAINT "job_events_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_repo_id_repositories_id_fk" FOREIGN KEY ("repo_id") REFERENCES "public"."repositories"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_parent_job_id_jobs_id_fk" FOREIGN KEY ("parent_job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "log_lines" ADD CONSTRAINT "log_lines_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_token_id_agent_tokens_id_fk" FOREIGN KEY ("token_id") REFERENCES "public"."agent_tokens"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workflow_starts" ADD CONSTRAINT "workflow_starts_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "repositories_org_name_live_idx" ON "repositories" USING btree ("org_id","name") WHERE "repositories"."deleted_at" is null;--> statement-breakpoint
CREATE UNIQUE INDEX "job_events_job_seq_idx" ON "job_events" USING btree ("job_id","seq");--> statement-breakpoint
CREATE INDEX "jobs_org_created_idx" ON "jobs" USING btree ("org_id","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "jobs_dispatch_idx" ON "jobs" USING btree ("org_id",("queue_type" = 'rework') desc,"created_at","id") WHERE "jobs"."status" = 'queued';--> statement-breakpoint
CREATE INDEX "jobs_agent_idx" ON "jobs" USING btree ("agent_id") WHERE "jobs"."status" in ('assigned', 'running');--> statement-breakpoint
CREATE INDEX "jobs_repo_idx" ON "jobs" USING btree ("repo_id");--> statement-breakpoint
CREATE UNIQUE INDEX "agent_tokens_secret_hash_idx" ON "agent_tokens" USING btree ("secret_hash");--> statement-breakpoint
CREATE INDEX "agent_tokens_org_idx" ON "agent_tokens" USING btree ("org_id","created_at");--> statement-breakpoint
CREATE INDEX "agents_org_idx" ON "agents" USING btree ("org_id");