CREATE TABLE "run_changes" (
	"job_id" uuid NOT NULL,
	"attempt" integer NOT NULL,
	"branch" text,
	"pushed" boolean NOT NULL,
	"base_commit" text NOT NULL,
	"head_commit" text NOT NULL,
	"commits" jsonb NOT NULL,
	"commit_count" integer NOT NULL,
	"files_changed" integer NOT NULL,
	"insertions" integer NOT NULL,
	"deletions" integer NOT NULL,
	"summary" text,
	"pull_request_url" text,
	"patch_size" bigint NOT NULL,
	"patch_stored" boolean NOT NULL,
	"recorded_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "run_changes_pk" PRIMARY KEY("job_id","attempt")
);
--> statement-breakpoint
CREATE TABLE "run_patch_chunks" (
	"job_id" uuid NOT NULL,
	"attempt" integer NOT NULL,
	"byte_offset" bigint NOT NULL,
	"data" "bytea" NOT NULL,
	CONSTRAINT "run_patch_chunks_pk" PRIMARY KEY("job_id","attempt","byte_offset")
);
--> statement-breakpoint
ALTER TABLE "run_changes" ADD CONSTRAINT "run_changes_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_patch_chunks" ADD CONSTRAINT "run_patch_chunks_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;