// The organisation's agents as people see them: connection state, labels, capacity, running jobs.
import type { Database } from '../db/client.js';
import * as agentsRepo from '../db/agents.repository.js';
import type { AgentRow } from '../db/schema/index.js';
import { requireOrgRole, type Caller } from './access.js';

export interface Agent extends Omit<AgentRow, 'sessionId' | 'disconnectedAt' | 'leaseMs' | 'leaseMarginMs'> {
  state: 'connected' | 'disconnected';
  runningJobIds: string[];
}

export class AgentsService {
  constructor(private readonly db: Database) {}

  async list(caller: Caller, orgId: string, state?: 'connected' | 'disconnected'): Promise<Agent[]> {
    requireOrgRole(caller, orgId, 'Member');
    const rows = await agentsRepo.listAgents(this.db, orgId, state);
    if (rows.length === 0) return [];
    const held = await agentsRepo.listHeldJobs(this.db, orgId, rows.map((r) => r.id));
    return rows.map(({ sessionId, disconnectedAt: _gone, leaseMs: _lease, leaseMarginMs: _margin, ...agent }) => ({
      ...agent,
      state: sessionId ? 'connected' : 'disconnected',
      runningJobIds: held.filter((j) => j.agentId === agent.id).map((j) => j.id),
    }));
  }
}
