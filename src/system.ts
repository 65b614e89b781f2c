// Composition root: config → database → Temporal → the roles this process runs (HTTP API, gRPC
// gateway, Temporal worker). main.ts runs it for real; tests run the very same thing over loopback.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { openDatabase, type DatabaseHandle } from './db/client.js';
import { AgentGateway } from './grpc/agent-gateway.js';
import { startGrpcEndpoint, type GrpcEndpoint } from './grpc/server.js';
import { buildApp } from './http/app.js';
import { trackConnections, type OpenConnections } from './http/connections.js';
import { startMetricsEndpoint } from './http/metrics-endpoint.js';
import { createServices, type Services } from './services/index.js';
import { createDevKeysIfMissing } from './services/auth/dev-keys.js';
import { EventBus } from './services/notifications.js';
import { createJobActivities } from './temporal/activities/job.activities.js';
import { connectTemporal, createJobStepCompletions, createJobWorkflows } from './temporal/client.js';
import { startTemporalDevServer, type DevServer } from './temporal/dev-server.js';
import { installTemporalLogging, startWorker, type RunningWorker } from './temporal/worker.js';
import { Metrics } from './observability/metrics.js';
import { startTracing, type Tracing } from './observability/tracing.js';
import { drainWithinBudget, type RoleStop } from './shutdown.js';

export interface RunningSystem {
  config: Config;
  /** Base URL of the HTTP API, when this process serves it. */
  httpUrl: string | undefined;
  /** Port of the gRPC endpoint, when this process serves it. */
  grpcPort: number | undefined;
  /** Base URL of /metrics, /healthz and /readyz in a process without the HTTP API. */
  metricsUrl: string | undefined;
  services: Services;
  database: DatabaseHandle;
  temporal: Client;
  stop(): Promise<void>;
}

/** What a settled start-up step gave, or its failure thrown (after every step has settled, so stop() undoes them all). */
function valueOf<T>(outcome: PromiseSettledResult<T>): T {
  if (outcome.status === 'rejected') throw outcome.reason;
  return outcome.value;
}

const runs = (config: Config, role: 'api' | 'gateway' | 'worker') => config.role === 'all' || config.role === role;

export async function startSystem(config: Config, logger: Logger): Promise<RunningSystem> {
  // What stop() undoes: first every role's drain, side by side, each within its budget; then what the
  // roles stand on (Temporal, the database), newest first.
  const roleStops: RoleStop[] = [];
  const cleanup: (() => Promise<void>)[] = [];
  // Once, however often it is asked (a signal during a test's own stop, say): a second pass would
  // close the pool and PGlite again, and log their refusals as errors.
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await Promise.all(roleStops.splice(0).map((role) => drainWithinBudget(role, logger)));
      for (const step of cleanup.splice(0).reverse()) {
        await step().catch((err: Error) => logger.error({ err }, 'error during shutdown'));
      }
    })());

  // The start-up log says what each step took (`ms`, from the start), so a slow start points at its cause.
  const began = performance.now();
  const took = () => Math.round(performance.now() - began);
  try {
    // First in, last out: what every role traced is sent once they have all stopped.
    const tracing = startTracing(config);
    if (tracing) {
      cleanup.push(() => tracing.shutdown());
      logger.info({ endpoint: config.tracing?.endpoint, service: config.tracing?.serviceName }, 'tracing: spans exported over OTLP/HTTP');
    }
    await fs.mkdir(config.dataDir, { recursive: true });

    // The database and the embedded Temporal server start side by side: neither needs the other.
    const opening = (async () => {
      const handle = await openDatabase(config.database, (msg) => logger.warn(msg));
      try {
        await handle.migrate();
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw err;
      }
      logger.info({ driver: handle.driver, ms: took(), ...(config.database.kind === 'pglite' ? { dir: config.database.dir } : {}) }, 'database ready, migrations applied');
      return handle;
    })();
    const embedding = config.temporal.address
      ? Promise.resolve(undefined)
      : startTemporalDevServer({
          dataDir: config.dataDir,
          port: config.temporal.devPort,
          cliPath: config.temporal.cliPath,
          dbFile: path.join(config.dataDir, 'temporal', 'dev.db'),
          namespace: config.temporal.namespace,
          log: (line) => logger.info(line),
        }).then((devServer: DevServer) => {
          logger.info({ address: devServer.address, using: devServer.source, ms: took() }, 'embedded Temporal dev server started');
          return devServer;
        });
    // Connected as soon as Temporal listens, while the database may still be opening.
    const connecting = embedding.then((devServer) => connectTemporal(devServer?.address ?? config.temporal.address!, config.temporal.namespace, tracing !== undefined));
    // Dev auth's signing keys, made off the main thread on a first start (the API reads them when built).
    const keys = config.auth.mode === 'dev' ? createDevKeysIfMissing(config.auth.keyDir) : Promise.resolve();
    const [opened, embedded, connected, keysMade] = await Promise.allSettled([opening, embedding, connecting, keys]);
    // Whatever started is stopped again by stop(), even when another part failed.
    if (opened.status === 'fulfilled') cleanup.push(() => opened.value.close());
    if (embedded.status === 'fulfilled' && embedded.value) {
      const devServer = embedded.value;
      cleanup.push(() => devServer.stop());
    }
    if (connected.status === 'fulfilled') cleanup.push(() => connected.value.connection.close());
    const database = valueOf(opened);
    const temporalAddress = valueOf(embedded)?.address ?? config.temporal.address!;
    const temporal = valueOf(connected);
    valueOf(keysMade);

    const bus = new EventBus(database, (msg, details) => logger.warn(details, msg));
    const metrics = new Metrics();
    const services = createServices({
      metrics,
      config,
      database,
      bus,
      workflows: createJobWorkflows(temporal, config.temporal.taskQueue),
      completions: createJobStepCompletions(temporal),
      log: (msg, err) => logger.warn({ err }, msg),
    });
    // Every role drains the outbox of workflow starts, so a job stored by a replica that died still starts.
    services.workflowStarter.start();
    cleanup.push(() => services.workflowStarter.stop());

    // The roles start side by side (each waits mostly on the database, Temporal or its own threads),
    // except that the worker waits for the gateway's start to be recorded: agents' silence counts from
    // it (the lease rule), and the workflows the worker hosts look at that silence.
    const gatewayStarting = runs(config, 'gateway') ? startGateway(config, services, bus, metrics, logger, roleStops) : undefined;
    const starting: Promise<unknown>[] = [];
    if (gatewayStarting) starting.push(gatewayStarting.then(({ port }) => logger.info({ port, ms: took() }, 'gRPC endpoint listening')));
    if (runs(config, 'worker')) {
      starting.push(
        (async () => {
          await gatewayStarting;
          await startJobWorker(config, temporalAddress, services, logger, roleStops, tracing);
          logger.info({ taskQueue: config.temporal.taskQueue, ms: took() }, 'Temporal worker running');
        })(),
      );
    }
    // The API is built meanwhile, and listens last: /readyz answering means every role of this process runs.
    const building = runs(config, 'api') ? buildApi(config, services, database, temporal, metrics, logger, roleStops) : undefined;
    if (building) starting.push(building);
    (await Promise.allSettled(starting)).forEach(valueOf);

    let httpUrl: string | undefined;
    if (building) {
      const app = await building;
      await app.listen({ host: config.host, port: config.httpPort });
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : config.httpPort;
      const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
      httpUrl = `http://${host}:${port}`;
      logger.info({ url: httpUrl, docs: `${httpUrl}/docs`, ms: took() }, 'HTTP API listening');
    }
    // Without the API, the process still answers scrapes and probes: on its own small listener.
    let metricsUrl: string | undefined;
    if (!building) {
      const endpoint = await startMetricsEndpoint(config.host, config.metricsPort, metrics.registry, {
        database: () => database.ping(),
        temporal: async () => {
          await temporal.connection.workflowService.getSystemInfo({});
        },
        pendingMigrations: () => database.pendingMigrations(),
      });
      // Stopped after the roles have drained: a drain can be watched.
      cleanup.push(() => endpoint.stop());
      metricsUrl = endpoint.url;
      logger.info({ url: `${metricsUrl}/metrics`, ms: took() }, 'metrics endpoint listening');
    }
    logger.info({ role: config.role, ms: took() }, 'started');

    const grpcPort = gatewayStarting ? (await gatewayStarting).port : undefined;
    return { config, httpUrl, grpcPort, metricsUrl, services, database, temporal, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The agent gateway and its gRPC endpoint; on SIGTERM, GoAway and a wait for agents to move. */
async function startGateway(config: Config, services: Services, bus: EventBus, metrics: Metrics, logger: Logger, roleStops: RoleStop[]): Promise<{ port: number }> {
  const gateway = new AgentGateway(services.gateway, bus, {
    replica: config.replicaId,
    heartbeatIntervalMs: config.agents.heartbeatIntervalMs,
    leaseMs: config.jobs.agentSilenceTimeoutMs,
    leaseMarginMs: config.agents.heartbeatIntervalMs,
    helloTimeoutMs: config.agents.helloTimeoutMs,
    maxLogBatchLines: config.agents.maxLogBatchLines,
    sweepIntervalMs: config.agents.sweepIntervalMs,
  }, logger);
  metrics.observeAgents(() => gateway.capacity());
  let grpc: GrpcEndpoint | undefined;
  roleStops.push({
    role: 'gateway',
    budgetMs: config.shutdown.gatewayDrainMs,
    async drain() {
      // Before the endpoint stops: agents hear GoAway, keep their stream while they open one elsewhere.
      await gateway.stop();
      await grpc?.stop();
    },
    // The streams end with UNAVAILABLE (agents reconnect elsewhere), then the endpoint closes.
    force: () => ({ agents: gateway.endStreams('drain budget spent') }),
  });
  await gateway.start();
  grpc = await startGrpcEndpoint(config.host, config.grpcPort, (server) => gateway.register(server));
  return { port: grpc.port };
}

/** The Temporal worker; on SIGTERM it polls no more and finishes the tasks it holds. */
async function startJobWorker(config: Config, address: string, services: Services, logger: Logger, roleStops: RoleStop[], tracing: Tracing | undefined): Promise<void> {
  installTemporalLogging(logger, config.temporal.metricsAddress);
  const { worker, done }: RunningWorker = await startWorker({
    address,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    activities: createJobActivities({ lifecycle: services.lifecycle }),
    workflowBundlePath: config.temporal.workflowBundlePath,
    drainMs: config.shutdown.workerDrainMs,
    tracing,
  });
  roleStops.push({
    role: 'worker',
    budgetMs: config.shutdown.workerDrainMs,
    async drain() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
    // The SDK cancels the activities left and stops the worker itself (startWorker's drainMs).
    force: () => {
      const status = worker.getStatus();
      return { activities: status.numInFlightActivities, workflowActivations: status.numInFlightWorkflowActivations };
    },
  });
}

/** The HTTP API, built but not yet listening; on SIGTERM it refuses new requests, finishes the rest, and tells viewers 1001. */
async function buildApi(config: Config, services: Services, database: DatabaseHandle, temporal: Client, metrics: Metrics, logger: Logger, roleStops: RoleStop[]): Promise<FastifyInstance> {
  // The API writes idempotency keys, so it sweeps the expired ones (every replica; deletes are harmless twice).
  services.idempotency.start();
  let app: FastifyInstance | undefined;
  let connections: OpenConnections | undefined;
  roleStops.push({
    role: 'api',
    budgetMs: config.shutdown.apiDrainMs,
    async drain() {
      services.idempotency.stop();
      await app?.close();
    },
    force: () => ({ connections: connections?.cutAll() ?? 0 }),
  });
  app = await buildApp({ config, services, database, temporal, logger, metrics: metrics.registry });
  connections = trackConnections(app.server);
  return app;
}
