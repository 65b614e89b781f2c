// Composition root: config → database → Temporal → the roles this process runs (HTTP API, gRPC
// gateway, Temporal worker). main.ts runs it for real; tests run the very same thing over loopback.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { openDatabase, type DatabaseHandle } from './db/client.js';
import { AgentGateway } from './grpc/agent-gateway.js';
import { startGrpcEndpoint } from './grpc/server.js';
import { buildApp } from './http/app.js';
import { createServices, type Services } from './services/index.js';
import { EventBus } from './services/notifications.js';
import { createJobActivities } from './temporal/activities/job.activities.js';
import { connectTemporal, createJobStepCompletions, createJobWorkflows } from './temporal/client.js';
import { startTemporalDevServer, type DevServer } from './temporal/dev-server.js';
import { installTemporalLogging, startWorker, type RunningWorker } from './temporal/worker.js';
import { Metrics } from './observability/metrics.js';
import { startTracing } from './observability/tracing.js';

export interface RunningSystem {
  config: Config;
  /** Base URL of the HTTP API, when this process serves it. */
  httpUrl: string | undefined;
  /** Port of the gRPC endpoint, when this process serves it. */
  grpcPort: number | undefined;
  services: Services;
  database: DatabaseHandle;
  temporal: Client;
  stop(): Promise<void>;
}

const runs = (config: Config, role: 'api' | 'gateway' | 'worker') => config.role === 'all' || config.role === role;

export async function startSystem(config: Config, logger: Logger): Promise<RunningSystem> {
  const cleanup: (() => Promise<void>)[] = [];
  // Once, however often it is asked (a signal during a test's own stop, say): a second pass would
  // close the pool and PGlite again, and log their refusals as errors.
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
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
    const [opened, embedded] = await Promise.allSettled([opening, embedding]);
    // Whatever started is stopped again by stop(), even when the other failed.
    if (opened.status === 'fulfilled') cleanup.push(() => opened.value.close());
    if (embedded.status === 'fulfilled' && embedded.value) {
      const devServer = embedded.value;
      cleanup.push(() => devServer.stop());
    }
    if (opened.status === 'rejected') throw opened.reason;
    if (embedded.status === 'rejected') throw embedded.reason;
    const database = opened.value;
    const temporalAddress = embedded.value?.address ?? config.temporal.address!;
    const temporal = await connectTemporal(temporalAddress, config.temporal.namespace, tracing !== undefined);
    cleanup.push(() => temporal.connection.close());

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

    // The gateway starts before the worker: it records its start, from which agents' silence counts
    // (the lease rule), before the workflows it hosts can look at any agent's silence.
    let grpcPort: number | undefined;
    if (runs(config, 'gateway')) {
      const gateway = new AgentGateway(services.gateway, bus, {
        replica: config.replicaId,
        heartbeatIntervalMs: config.agents.heartbeatIntervalMs,
        leaseMs: config.jobs.agentSilenceTimeoutMs,
        leaseMarginMs: config.agents.heartbeatIntervalMs,
        helloTimeoutMs: config.agents.helloTimeoutMs,
        maxLogBatchLines: config.agents.maxLogBatchLines,
        sweepIntervalMs: config.agents.sweepIntervalMs,
        drainMs: config.agents.drainTimeoutMs,
      }, logger);
      metrics.observeAgents(() => gateway.capacity());
      await gateway.start();
      const grpc = await startGrpcEndpoint(config.host, config.grpcPort, (server) => gateway.register(server));
      cleanup.push(() => grpc.stop());
      // Runs before the endpoint stops: agents hear GoAway and reconnect to another replica.
      cleanup.push(() => gateway.stop());
      grpcPort = grpc.port;
      logger.info({ port: grpc.port, ms: took() }, 'gRPC endpoint listening');
    }

    if (runs(config, 'worker')) {
      installTemporalLogging(logger, config.temporal.metricsAddress);
      const running: RunningWorker = await startWorker({
        address: temporalAddress,
        namespace: config.temporal.namespace,
        taskQueue: config.temporal.taskQueue,
        activities: createJobActivities({ lifecycle: services.lifecycle }),
        workflowBundlePath: config.temporal.workflowBundlePath,
        tracing,
      });
      cleanup.push(async () => {
        if (running.worker.getState() === 'RUNNING') running.worker.shutdown();
        await running.done;
      });
      logger.info({ taskQueue: config.temporal.taskQueue, ms: took() }, 'Temporal worker running');
    }

    let httpUrl: string | undefined;
    if (runs(config, 'api')) {
      // The API writes idempotency keys, so it sweeps the expired ones (every replica; deletes are harmless twice).
      services.idempotency.start();
      cleanup.push(async () => services.idempotency.stop());
      const app = await buildApp({ config, services, database, temporal, logger, metrics: metrics.registry });
      cleanup.push(() => app.close());
      await app.listen({ host: config.host, port: config.httpPort });
      const address = app.server.address();
      const port = typeof address === 'object' && address ? address.port : config.httpPort;
      const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
      httpUrl = `http://${host}:${port}`;
      logger.info({ url: httpUrl, docs: `${httpUrl}/docs`, ms: took() }, 'HTTP API listening');
    }
    logger.info({ role: config.role, ms: took() }, 'started');

    return { config, httpUrl, grpcPort, services, database, temporal, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
