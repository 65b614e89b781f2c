import type { ApiHandlers } from '../../../generated/openapi/handlers.js';
import { bindCursor, cursorScope, unbindCursor } from '../../services/cursor.js';
import type { Services } from '../../services/index.js';
import type { RequestContext } from '../context.js';
import { idempotencyKey, replayHeader } from '../idempotency.js';
import { toWire } from '../wire.js';

type JobHandlers = Pick<ApiHandlers<RequestContext>, 'createJob' | 'listJobs' | 'getJob' | 'getJobDiff' | 'cancelJob'>;

export function jobHandlers({ jobs }: Services): JobHandlers {
  return {
    async createJob({ params, headers, body }, ctx) {
      const { resource: job, replayed } = await jobs.submit(ctx.caller(), params.orgId, {
        prompt: body.prompt,
        repoId: body.repoId,
        queueType: body.queueType,
        parentJobId: body.parentJobId,
        labels: body.labels,
        maxAttempts: body.maxAttempts,
        cancelGraceSeconds: body.cancelGraceSeconds,
      }, idempotencyKey(headers['idempotency-key']));
      return { status: 201, headers: { Location: `/v1/orgs/${job.orgId}/jobs/${job.id}`, ...replayHeader(replayed) }, body: toWire(job) };
    },

    async listJobs({ params, query }, ctx) {
      // A cursor stands for this organisation and these filters only (openapi.yaml, Pagination).
      const scope = cursorScope('jobs', params.orgId, { status: query.status, queueType: query.queueType, repoId: query.repoId, parentJobId: query.parentJobId });
      const page = await jobs.list(ctx.caller(), params.orgId, {
        statuses: query.status,
        queueType: query.queueType,
        repoId: query.repoId,
        parentJobId: query.parentJobId,
        limit: query.limit,
        cursor: query.cursor === undefined ? undefined : unbindCursor(query.cursor, scope),
      });
      return { status: 200, body: { items: page.items.map(toWire), nextCursor: page.nextCursor && bindCursor(page.nextCursor, scope) } };
    },

    async getJob({ params }, ctx) {
      const { job, events, revisions } = await jobs.get(ctx.caller(), params.orgId, params.jobId);
      return {
        status: 200,
        body: { ...toWire(job), events: events.map(({ seq, type, status, at, attempt, agentId, detail }) => ({ seq, type, status, at: at.toISOString(), attempt, agentId, detail })), revisions },
      };
    },

    async getJobDiff({ params }, ctx) {
      const diff = await jobs.diff(ctx.caller(), params.orgId, params.jobId);
      return {
        status: 200,
        headers: { 'Content-Disposition': `attachment; filename="job-${params.jobId}.diff"`, 'Content-Length': String(diff.bytes) },
        body: diff.chunks,
      };
    },

    async cancelJob({ params, body }, ctx) {
      const job = await jobs.cancel(ctx.caller(), params.orgId, params.jobId, body?.reason);
      return { status: 202, body: toWire(job) };
    },
  };
}
