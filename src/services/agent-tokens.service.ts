// Organisation agent tokens: created by an admin, shown once, stored as a hash, revocable.
import { createHash, randomBytes } from 'node:crypto';
import type { Database } from '../db/client.js';
import * as agentsRepo from '../db/agents.repository.js';
import type { AgentTokenRow } from '../db/schema/index.js';
import { NotFoundError } from '../errors.js';
import { requireOrgRole, type Caller } from './access.js';
import type { Publish } from './notifications.js';

export type AgentToken = Omit<AgentTokenRow, 'secretHash'>;

/** Recognisable in logs and secret scanners; the rest is 256 random bits. */
const SECRET_PREFIX = 'ajt_';
const SHOWN_PREFIX_LENGTH = SECRET_PREFIX.length + 8;

export function hashAgentSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

function toAgentToken(row: AgentTokenRow): AgentToken {
  const { secretHash: _hash, ...token } = row;
  return token;
}

export class AgentTokensService {
  constructor(private readonly deps: { db: Database; publish: Publish }) {}

  async create(caller: Caller, orgId: string, name: string): Promise<{ token: AgentToken; secret: string }> {
    requireOrgRole(caller, orgId, 'Admin');
    const secret = SECRET_PREFIX + randomBytes(32).toString('base64url');
    const row = await agentsRepo.insertAgentToken(this.deps.db, {
      orgId,
      name,
      prefix: secret.slice(0, SHOWN_PREFIX_LENGTH),
      secretHash: hashAgentSecret(secret),
      createdBy: caller.userId,
    });
    return { token: toAgentToken(row), secret };
  }

  async list(caller: Caller, orgId: string): Promise<AgentToken[]> {
    requireOrgRole(caller, orgId, 'Admin');
    return (await agentsRepo.listAgentTokens(this.deps.db, orgId)).map(toAgentToken);
  }

  /** Revoking twice is harmless; live agent streams using the token are ended by the gateway. */
  async revoke(caller: Caller, orgId: string, tokenId: string): Promise<AgentToken> {
    requireOrgRole(caller, orgId, 'Admin');
    const row = await agentsRepo.revokeAgentToken(this.deps.db, orgId, tokenId);
    if (!row) throw new NotFoundError(`Agent token ${tokenId}`);
    await this.deps.publish('agent_token_revoked', { tokenId });
    return toAgentToken(row);
  }
}
