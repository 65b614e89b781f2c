// Builds every domain service from the process's dependencies.
import type { Config } from '../config.js';
import type { DatabaseHandle } from '../db/client.js';
import { AgentGatewayService } from './agent-gateway.service.js';
import { AgentTokensService } from './agent-tokens.service.js';
import { AgentsService } from './agents.service.js';
import { createUserAuthenticator, type UserAuthenticator } from './auth/user-authenticator.js';
import { JobLifecycleService } from './job-lifecycle.service.js';
import { IdempotencyKeys } from './idempotency.js';
import { JobsService } from './jobs.service.js';
import type { JobStepCompletions, JobWorkflows } from './workflow-ports.js';
import { LogsService } from './logs.service.js';
import type { EventBus } from './notifications.js';
import { RepositoriesService } from './repositories.service.js';
import { WorkflowStarter } from './workflow-starter.service.js';
import type { Metrics } from '../observability/metrics.js';

export interface Services {
  userAuth: UserAuthenticator;
  repositories: RepositoriesService;
  jobs: JobsService;
  lifecycle: JobLifecycleService;
  logs: LogsService;
  agentTokens: AgentTokensService;
  agents: AgentsService;
  gateway: AgentGatewayService;
  workflowStarter: WorkflowStarter;
  idempotency: IdempotencyKeys;
}

export function createServices(deps: {
  config: Config;
  database: DatabaseHandle;
  workflows: JobWorkflows;
  completions: JobStepCompletions;
  bus: EventBus;
  log: (msg: string, err?: unknown) => void;
  metrics: Metrics;
}): Services {
  const { config, database, workflows, completions } = deps;
  const { db } = database;
  const publish = deps.bus.publish;
  const workflowStarter = new WorkflowStarter({ db, workflows, log: deps.log, metrics: deps.metrics }, config.workflowStarts);
  const idempotency = new IdempotencyKeys(db, { ...config.idempotency, sweepBatch: 1000 }, deps.log);
  return {
    workflowStarter,
    idempotency,
    userAuth: createUserAuthenticator(config.auth),
    repositories: new RepositoriesService(db, idempotency),
    jobs: new JobsService({
      db,
      publish,
      kickStarter: () => workflowStarter.kick(),
      workflows,
      maxQueuedPerOrg: config.jobs.maxQueuedPerOrg,
      idempotency,
      metrics: deps.metrics,
      timeouts: {
        queueMs: config.jobs.queueTimeoutMs,
        startMs: config.jobs.startTimeoutMs,
        runMs: config.jobs.runTimeoutMs,
        agentSilenceMs: config.jobs.agentSilenceTimeoutMs,
        cancelGraceMs: config.jobs.cancelGraceMs,
      },
    }),
    lifecycle: new JobLifecycleService({ db, publish, metrics: deps.metrics }),
    logs: new LogsService(db),
    agentTokens: new AgentTokensService({ db, publish }),
    agents: new AgentsService(db),
    gateway: new AgentGatewayService({ db, completions, log: deps.log, maxPatchBytes: config.agents.maxPatchBytes, metrics: deps.metrics }),
  };
}
