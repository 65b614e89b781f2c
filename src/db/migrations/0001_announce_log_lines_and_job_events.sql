-- Announce new log lines and job status changes to every replica (LISTEN/NOTIFY), from the
-- transaction that stores them: whoever writes (any replica, any code path) announces, and a
-- listener hears only of what has committed. Payloads stay small; listeners re-read the tables.

-- One notification per job per INSERT statement (a whole log batch), not one per line:
-- payload "<job id>:<highest seq inserted>". Lines a resend already stored insert nothing and
-- announce nothing.
CREATE FUNCTION announce_log_lines() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  batch record;
BEGIN
  FOR batch IN SELECT job_id, max(seq) AS last_seq FROM inserted_lines GROUP BY job_id LOOP
    PERFORM pg_notify('log_appended', batch.job_id::text || ':' || batch.last_seq::text);
  END LOOP;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER log_lines_announce
  AFTER INSERT ON log_lines
  REFERENCING NEW TABLE AS inserted_lines
  FOR EACH STATEMENT EXECUTE FUNCTION announce_log_lines();
--> statement-breakpoint
-- Every status change appends a job event (jobs.repository.ts: transition, claim), so announcing
-- events announces every transition: payload {"jobId": …, "status": …}.
CREATE FUNCTION announce_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('job_changed', json_build_object('jobId', NEW.job_id, 'status', NEW.status)::text);
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER job_events_announce
  AFTER INSERT ON job_events
  FOR EACH ROW EXECUTE FUNCTION announce_job_event();
