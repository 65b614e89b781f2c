CREATE TABLE "gateway_starts" (
	"replica" text PRIMARY KEY NOT NULL,
	"started_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "stop_request" jsonb;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "lease_ms" integer;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "lease_margin_ms" integer;--> statement-breakpoint
ALTER TABLE "workflow_starts" ADD COLUMN "cancel_reason" text;