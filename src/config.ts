// One schema for every setting. loadConfig(env) is pure: it reads nothing but `env`, so a bad
// value is reported (one line per problem) before any port opens or any file is written.
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import ms from 'ms';

export const roles = ['all', 'api', 'gateway', 'worker'] as const;
export type Role = (typeof roles)[number];

const port = (fallback: number) =>
  z.coerce
    .number({ error: 'must be a port number' })
    .int('must be a whole number')
    .min(0, 'must be between 0 and 65535')
    .max(65535, 'must be between 0 and 65535')
    .default(fallback);

const positiveInt = (fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1, 'must be at least 1').max(max, `must be at most ${max}`).default(fallback);

/** Durations are written like `90s`, `15m`, `24h`, `500ms`; a bare number is milliseconds. */
const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      const millis = /^\d+$/.test(value) ? Number(value) : ms(value as ms.StringValue);
      if (millis === undefined || !Number.isFinite(millis) || millis <= 0) {
        ctx.addIssue({ code: 'custom', message: `must be a positive duration such as 30s, 15m or 2h (got "${value}")` });
        return z.NEVER;
      }
      return millis;
    });

const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

const settings = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  ROLE: z.enum(roles, { error: `must be one of ${roles.join(', ')}` }).default('all'),
  HOST: z.string().min(1).default('0.0.0.0'),
  PORT: port(8080),
  GRPC_PORT: port(50051),
  METRICS_PORT: port(9464),
  DATA_DIR: z.string().min(1).default('./.data'),
  REPLICA_ID: optionalString,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  BODY_LIMIT_BYTES: positiveInt(1024 * 1024, 64 * 1024 * 1024),

  DATABASE_URL: optionalString.pipe(
    z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
      .optional(),
  ),
  DATABASE_POOL_SIZE: positiveInt(10, 1000),

  TEMPORAL_ADDRESS: optionalString,
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('jobs'),
  TEMPORAL_CLI_PATH: optionalString,
  TEMPORAL_DEV_PORT: port(7233),
  TEMPORAL_WORKFLOW_BUNDLE: optionalString,
  TEMPORAL_METRICS_ADDRESS: optionalString,

  PROPELAUTH_AUTH_URL: optionalString.pipe(z.url({ error: 'must be a URL such as https://auth.example.com' }).optional()),
  PROPELAUTH_API_KEY: optionalString,
  PROPELAUTH_VERIFIER_KEY: optionalString,
  DEV_AUTH_ISSUER: z.url().default('http://localhost:8080'),

  JOB_QUEUE_TIMEOUT: duration('24h'),
  JOB_START_TIMEOUT: duration('5m'),
  JOB_RUN_TIMEOUT: duration('2h'),
  AGENT_SILENCE_TIMEOUT: duration('90s'),
  JOB_CANCEL_GRACE: duration('30s'),
  ORG_MAX_QUEUED_JOBS: positiveInt(10_000),
  AGENT_HEARTBEAT_INTERVAL: duration('10s'),
  DISPATCH_SWEEP_INTERVAL: duration('5s'),
  GATEWAY_DRAIN_TIMEOUT: duration('10s'),
  API_DRAIN_TIMEOUT: duration('10s'),
  WORKER_DRAIN_TIMEOUT: duration('10s'),
  AGENT_HELLO_TIMEOUT: duration('10s'),
  AGENT_MAX_LOG_BATCH_LINES: positiveInt(500, 10_000),
  WORKFLOW_START_SWEEP_INTERVAL: duration('2s'),
  WORKFLOW_START_BATCH: positiveInt(16, 1000),
  WORKFLOW_START_LEASE: duration('30s'),
  IDEMPOTENCY_KEY_SWEEP_INTERVAL: duration('10m'),
  LOG_STREAM_PING_INTERVAL: duration('30s'),
  MAX_PATCH_BYTES: positiveInt(32 * 1024 * 1024, 1024 * 1024 * 1024),
  LOG_STREAM_BUFFER_BYTES: positiveInt(512 * 1024, 64 * 1024 * 1024),
  LOG_STREAM_STALL_TIMEOUT: duration('30s'),
  IDEMPOTENCY_KEY_TTL: duration('24h'),
  IDEMPOTENCY_KEY_WAIT: duration('5s'),

  // OpenTelemetry's own names (its SDK environment specification): traces are off unless one is set.
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalString.pipe(z.url({ error: 'must be a URL such as http://collector:4318' }).optional()),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optionalString.pipe(z.url({ error: 'must be a URL such as http://collector:4318/v1/traces' }).optional()),
  OTEL_SERVICE_NAME: z.string().trim().min(1).default('agent-jobs'),
});

/** Every environment variable the server reads (the README's Configuration table lists each). */
export const settingNames = Object.keys(settings.shape);

const envSchema = settings.superRefine((env, ctx) => {
  if (env.PROPELAUTH_AUTH_URL && !env.PROPELAUTH_API_KEY) {
    ctx.addIssue({ code: 'custom', path: ['PROPELAUTH_API_KEY'], message: 'is required when PROPELAUTH_AUTH_URL is set' });
  }
  if (env.ROLE !== 'all') {
    // Embedded PGlite and the embedded Temporal dev server belong to one process.
    if (!env.DATABASE_URL) ctx.addIssue({ code: 'custom', path: ['DATABASE_URL'], message: `is required when ROLE=${env.ROLE}: split roles share one PostgreSQL server` });
    if (!env.TEMPORAL_ADDRESS) ctx.addIssue({ code: 'custom', path: ['TEMPORAL_ADDRESS'], message: `is required when ROLE=${env.ROLE}: split roles share one Temporal cluster` });
  }
  if (env.AGENT_HEARTBEAT_INTERVAL * 2 > env.AGENT_SILENCE_TIMEOUT) {
    ctx.addIssue({ code: 'custom', path: ['AGENT_SILENCE_TIMEOUT'], message: 'must be at least twice AGENT_HEARTBEAT_INTERVAL, or one late heartbeat loses the agent' });
  }
  if (env.NODE_ENV === 'production' && !env.PROPELAUTH_AUTH_URL) {
    ctx.addIssue({
      code: 'custom',
      path: ['PROPELAUTH_AUTH_URL'],
      message: 'is required when NODE_ENV=production: dev auth (local signing keys) is refused in production',
    });
  }
});

export type AuthConfig =
  | { mode: 'propelauth'; authUrl: string; apiKey: string; verifierKey: string | undefined }
  | { mode: 'dev'; issuer: string; keyDir: string };

export interface Config {
  env: 'development' | 'test' | 'production';
  role: Role;
  replicaId: string;
  host: string;
  httpPort: number;
  grpcPort: number;
  /** Where a process without the API (ROLE=gateway or worker) serves /metrics, /healthz and /readyz. */
  metricsPort: number;
  dataDir: string;
  logLevel: string;
  bodyLimitBytes: number;
  database: { kind: 'postgres'; url: string; poolSize: number } | { kind: 'pglite'; dir: string };
  temporal: {
    address: string | undefined;
    namespace: string;
    taskQueue: string;
    cliPath: string | undefined;
    devPort: number;
    workflowBundlePath: string | undefined;
    /** host:port where the worker serves the Temporal SDK's own Prometheus metrics (off when unset). */
    metricsAddress: string | undefined;
  };
  auth: AuthConfig;
  jobs: {
    queueTimeoutMs: number;
    startTimeoutMs: number;
    runTimeoutMs: number;
    agentSilenceTimeoutMs: number;
    cancelGraceMs: number;
    maxQueuedPerOrg: number;
  };
  agents: {
    heartbeatIntervalMs: number;
    /** How often each replica looks for work for its agents without being notified. */
    sweepIntervalMs: number;
    /** The largest patch of a run's change the server stores (Welcome.max_patch_bytes). */
    maxPatchBytes: number;
    /** How long a new stream may take to say Hello. */
    helloTimeoutMs: number;
    /** Welcome.max_log_batch_lines: the lines per LogBatch the server asks for. */
    maxLogBatchLines: number;
  };
  /** On SIGTERM each role drains within its budget, side by side; past it, what is left is cut. */
  shutdown: {
    /** The API refuses new requests and waits for those under way (and viewers' close) this long. */
    apiDrainMs: number;
    /** The gateway keeps agents' streams working after GoAway this long, for them to move. */
    gatewayDrainMs: number;
    /** The worker polls no more and finishes its tasks within this; then they are cancelled. */
    workerDrainMs: number;
  };
  workflowStarts: {
    /** How often each process looks in the outbox for workflows to start without being told. */
    sweepIntervalMs: number;
    /** Outbox rows one pass takes. */
    batchSize: number;
    /** How long a pass holds the rows it took before another process may take them. */
    leaseMs: number;
  };
  logStream: {
    /** Bytes a viewer may have waiting to be sent before it is closed as too slow. */
    maxBufferedBytes: number;
    /** How long a viewer's buffer may stay full while it reads the backlog before it is closed as too slow. */
    stallTimeoutMs: number;
    /** How often the server pings each viewer, to find dead connections and keep proxies open. */
    pingIntervalMs: number;
  };
  idempotency: {
    /** How long the answer to a request with an Idempotency-Key is kept for its retries. */
    ttlMs: number;
    /** How long a retry waits for the first request with its key to finish before it is answered 409. */
    waitMs: number;
    /** How often expired keys are deleted. */
    sweepIntervalMs: number;
  };
  /** Traces over OTLP/HTTP; undefined (the default) turns them off: no exporter, a no-op tracer. */
  tracing: { endpoint: string; serviceName: string } | undefined;
}

/**
 * Where traces go: the traces endpoint as given, else the base endpoint with the signal's path
 * appended, as the OpenTelemetry specification says of OTEL_EXPORTER_OTLP_ENDPOINT.
 */
function tracesEndpoint(tracesUrl: string | undefined, baseUrl: string | undefined): string | undefined {
  if (tracesUrl) return tracesUrl;
  return baseUrl ? `${baseUrl.replace(/\/+$/, '')}/v1/traces` : undefined;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = issue.path.join('.') || 'environment';
      const raw = typeof issue.path[0] === 'string' ? env[issue.path[0]] : undefined;
      const got = raw !== undefined && !issue.message.includes('(got') ? ` (got "${raw}")` : '';
      return `${name}: ${issue.message}${got}`;
    });
    throw new ConfigError(problems);
  }
  const e = parsed.data;
  const dataDir = path.resolve(e.DATA_DIR);
  const traces = tracesEndpoint(e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, e.OTEL_EXPORTER_OTLP_ENDPOINT);
  return {
    env: e.NODE_ENV,
    role: e.ROLE,
    replicaId: e.REPLICA_ID ?? `${os.hostname()}-${process.pid}`,
    host: e.HOST,
    httpPort: e.PORT,
    grpcPort: e.GRPC_PORT,
    metricsPort: e.METRICS_PORT,
    dataDir,
    logLevel: e.LOG_LEVEL,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    database: e.DATABASE_URL
      ? { kind: 'postgres', url: e.DATABASE_URL, poolSize: e.DATABASE_POOL_SIZE }
      : { kind: 'pglite', dir: path.join(dataDir, 'pglite') },
    temporal: {
      address: e.TEMPORAL_ADDRESS,
      namespace: e.TEMPORAL_NAMESPACE,
      taskQueue: e.TEMPORAL_TASK_QUEUE,
      cliPath: e.TEMPORAL_CLI_PATH,
      devPort: e.TEMPORAL_DEV_PORT,
      workflowBundlePath: e.TEMPORAL_WORKFLOW_BUNDLE,
      metricsAddress: e.TEMPORAL_METRICS_ADDRESS,
    },
    auth: e.PROPELAUTH_AUTH_URL
      ? {
          mode: 'propelauth',
          authUrl: e.PROPELAUTH_AUTH_URL,
          apiKey: e.PROPELAUTH_API_KEY ?? '',
          verifierKey: e.PROPELAUTH_VERIFIER_KEY?.replace(/\\n/g, '\n'),
        }
      : { mode: 'dev', issuer: e.DEV_AUTH_ISSUER, keyDir: path.join(dataDir, 'dev-auth') },
    jobs: {
      queueTimeoutMs: e.JOB_QUEUE_TIMEOUT,
      startTimeoutMs: e.JOB_START_TIMEOUT,
      runTimeoutMs: e.JOB_RUN_TIMEOUT,
      agentSilenceTimeoutMs: e.AGENT_SILENCE_TIMEOUT,
      cancelGraceMs: e.JOB_CANCEL_GRACE,
      maxQueuedPerOrg: e.ORG_MAX_QUEUED_JOBS,
    },
    agents: { heartbeatIntervalMs: e.AGENT_HEARTBEAT_INTERVAL, sweepIntervalMs: e.DISPATCH_SWEEP_INTERVAL, maxPatchBytes: e.MAX_PATCH_BYTES, helloTimeoutMs: e.AGENT_HELLO_TIMEOUT, maxLogBatchLines: e.AGENT_MAX_LOG_BATCH_LINES },
    shutdown: { apiDrainMs: e.API_DRAIN_TIMEOUT, gatewayDrainMs: e.GATEWAY_DRAIN_TIMEOUT, workerDrainMs: e.WORKER_DRAIN_TIMEOUT },
    workflowStarts: { sweepIntervalMs: e.WORKFLOW_START_SWEEP_INTERVAL, batchSize: e.WORKFLOW_START_BATCH, leaseMs: e.WORKFLOW_START_LEASE },
    logStream: { maxBufferedBytes: e.LOG_STREAM_BUFFER_BYTES, stallTimeoutMs: e.LOG_STREAM_STALL_TIMEOUT, pingIntervalMs: e.LOG_STREAM_PING_INTERVAL },
    idempotency: { ttlMs: e.IDEMPOTENCY_KEY_TTL, waitMs: e.IDEMPOTENCY_KEY_WAIT, sweepIntervalMs: e.IDEMPOTENCY_KEY_SWEEP_INTERVAL },
    tracing: traces ? { endpoint: traces, serviceName: e.OTEL_SERVICE_NAME } : undefined,
  };
}
