ALTER TABLE "log_lines" ADD COLUMN "attempt" integer;--> statement-breakpoint
-- Lines stored before runs were recorded on them: the server's line that ends a run ("attempt N
-- ended without a result: ..." or "attempt N was not started: ...") belongs to run N, the lines after
-- it to run N + 1, and the lines before any such line to run 1.
UPDATE "log_lines" l SET "attempt" = numbered.attempt
FROM (
  SELECT job_id, seq,
    coalesce(own, max(own) OVER (PARTITION BY job_id ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 1, 1) AS attempt
  FROM (
    SELECT job_id, seq,
      CASE WHEN stream = 'system' THEN substring(text FROM '^attempt ([0-9]+) (?:ended without a result|was not started): ')::int END AS own
    FROM "log_lines"
  ) marked
) numbered
WHERE l.job_id = numbered.job_id AND l.seq = numbered.seq;--> statement-breakpoint
ALTER TABLE "log_lines" ALTER COLUMN "attempt" SET NOT NULL;
