-- Patch chunks are written while the agent pushes, and the time to store them is on the path from the
-- command's exit to the job's end: lz4 compresses them several times faster than pglz, PostgreSQL's
-- default, for nearly the same size. A server built without lz4 (PGlite, some builds) keeps pglz.
-- Only new values are affected; chunks already stored stay as they are.
DO $$
BEGIN
  ALTER TABLE "run_patch_chunks" ALTER COLUMN "data" SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'lz4 is not available: run_patch_chunks.data keeps the default compression';
END
$$;
