import type { ApiHandlers } from '../../../generated/openapi/handlers.js';
import { bindCursor, cursorScope, unbindCursor } from '../../services/cursor.js';
import type { Services } from '../../services/index.js';
import type { RequestContext } from '../context.js';
import { idempotencyKey, replayHeader } from '../idempotency.js';
import { toWire } from '../wire.js';

type RepositoryHandlers = Pick<ApiHandlers<RequestContext>, 'createRepository' | 'listRepositories' | 'getRepository' | 'deleteRepository'>;

export function repositoryHandlers({ repositories }: Services): RepositoryHandlers {
  return {
    async createRepository({ params, headers, body }, ctx) {
      const { resource: repo, replayed } = await repositories.create(ctx.caller(), params.orgId, body, idempotencyKey(headers['idempotency-key']));
      return { status: 201, headers: { Location: `/v1/orgs/${repo.orgId}/repositories/${repo.id}`, ...replayHeader(replayed) }, body: toWire(repo) };
    },

    async listRepositories({ params, query }, ctx) {
      // A cursor stands for this organisation's repository list only (openapi.yaml, Pagination).
      const scope = cursorScope('repositories', params.orgId);
      const cursor = query.cursor === undefined ? undefined : unbindCursor(query.cursor, scope);
      const page = await repositories.list(ctx.caller(), params.orgId, { limit: query.limit, cursor });
      return { status: 200, body: { items: page.items.map(toWire), nextCursor: page.nextCursor && bindCursor(page.nextCursor, scope) } };
    },

    async getRepository({ params }, ctx) {
      return { status: 200, body: toWire(await repositories.get(ctx.caller(), params.orgId, params.repoId)) };
    },

    async deleteRepository({ params }, ctx) {
      await repositories.delete(ctx.caller(), params.orgId, params.repoId);
      return { status: 204 };
    },
  };
}
