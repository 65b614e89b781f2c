// Builds every domain service from the process's dependencies.
import type { Config } from '../config.js';
import type { DatabaseHandle } from '../db/client.js';
import { AgentTokensService } from './agent-tokens.service.js';
import { AgentsService } from './agents.service.js';
import { createUserAuthenticator, type UserAuthenticator } from './auth/user-authenticator.js';
import { JobLifecycleService } from './job-lifecycle.service.js';
import { JobsService, type JobWorkflows } from './jobs.service.js';
import { LogsService } from './logs.service.js';
import { RepositoriesService } from './repositories.service.js';

export interface Services {
  userAuth: UserAuthenticator;
  repositories: RepositoriesService;
  jobs: JobsService;
  lifecycle: JobLifecycleService;
  logs: LogsService;
  agentTokens: AgentTokensService;
  agents: AgentsService;
}

export function createServices(deps: { config: Config; database: DatabaseHandle; workflows: JobWorkflows }): Services {
  const { config, database, workflows } = deps;
  const { db } = database;
  const notify = (channel: string, payload: string) => database.notify(channel, payload);
  return {
    userAuth: createUserAuthenticator(config.auth),
    repositories: new RepositoriesService(db),
    jobs: new JobsService({
      db,
      workflows,
      maxQueuedPerOrg: config.jobs.maxQueuedPerOrg,
      timeouts: {
        queueMs: config.jobs.queueTimeoutMs,
        startMs: config.jobs.startTimeoutMs,
        runMs: config.jobs.runTimeoutMs,
        agentSilenceMs: config.jobs.agentSilenceTimeoutMs,
        cancelGraceMs: config.jobs.cancelGraceMs,
      },
    }),
    lifecycle: new JobLifecycleService({ db, notify }),
    logs: new LogsService(db),
    agentTokens: new AgentTokensService({ db, notify }),
    agents: new AgentsService(db),
  };
}
