import type { ApiHandlers } from '../../../generated/openapi/handlers.js';
import type { Services } from '../../services/index.js';
import type { RequestContext } from '../context.js';
import { toWire } from '../wire.js';

type AgentHandlers = Pick<ApiHandlers<RequestContext>, 'createAgentToken' | 'listAgentTokens' | 'revokeAgentToken' | 'listAgents'>;

export function agentHandlers({ agentTokens, agents }: Services): AgentHandlers {
  return {
    async createAgentToken({ params, body }, ctx) {
      const { token, secret } = await agentTokens.create(ctx.caller(), params.orgId, body.name);
      return { status: 201, body: { token: toWire(token), secret } };
    },

    async listAgentTokens({ params }, ctx) {
      return { status: 200, body: { items: (await agentTokens.list(ctx.caller(), params.orgId)).map(toWire) } };
    },

    async revokeAgentToken({ params }, ctx) {
      return { status: 200, body: toWire(await agentTokens.revoke(ctx.caller(), params.orgId, params.tokenId)) };
    },

    async listAgents({ params, query }, ctx) {
      return { status: 200, body: { items: (await agents.list(ctx.caller(), params.orgId, query.state)).map(toWire) } };
    },
  };
}
