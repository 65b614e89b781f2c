import type { ApiHandlers } from '../../../generated/openapi/handlers.js';
import type { LogLine } from '../../services/logs.service.js';
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
      const lines = await logs.lines(ctx.caller(), params.orgId, params.jobId);
      return {
        status: 200,
        headers: { 'Content-Disposition': `attachment; filename="job-${params.jobId}.log"` },
        body: asText(lines),
      };
    },
  };
}

/** `<at> <stream> <text>` per line, as openapi.yaml describes the download, a page of lines per chunk. */
async function* asText(lines: AsyncIterable<LogLine>): AsyncGenerator<string> {
  let chunk = '';
  for await (const line of lines) {
    chunk += `${line.at.toISOString()} ${line.stream} ${line.text}\n`;
    if (chunk.length >= 64 * 1024) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}
