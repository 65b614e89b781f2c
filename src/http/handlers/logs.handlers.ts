import type { ApiHandlers } from '../../../generated/openapi/handlers.js';
import type { Services } from '../../services/index.js';
import type { RequestContext } from '../context.js';
import { toWire } from '../wire.js';

type LogHandlers = Pick<ApiHandlers<RequestContext>, 'listJobLogs' | 'downloadJobLog'>;

export function logHandlers({ logs }: Services): LogHandlers {
  return {
    async listJobLogs({ params, query }, ctx) {
      const page = await logs.page(ctx.caller(), params.orgId, params.jobId, query.after, query.limit);
      return { status: 200, body: { ...page, items: page.items.map(toWire) } };
    },

    async downloadJobLog({ params }, ctx) {
      const lines: string[] = [];
      for await (const line of logs.all(ctx.caller(), params.orgId, params.jobId)) lines.push(line.text);
      return {
        status: 200,
        headers: { 'Content-Disposition': `attachment; filename="job-${params.jobId}.log"` },
        body: lines.length ? `${lines.join('\n')}\n` : '',
      };
    },
  };
}
