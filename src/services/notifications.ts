// Cross-replica events carried by PostgreSQL LISTEN/NOTIFY, through one typed bus: each channel has
// one payload type and one codec, so a publisher and a listener cannot disagree on a payload, and a
// payload from another version is dropped with a warning rather than misread. Payloads stay small
// (ids only): a listener re-reads the tables, so a lost notification costs latency, never
// correctness. The services publish most of them; `log_appended` and `job_changed` come from
// triggers (migration 0001), so every writer announces what it stored, in the transaction that
// stores it (notifications.test.ts checks that the migrations name only channels of this bus).
import { z } from 'zod';

const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
const attempt = z.number().int().min(0);

const payloadSchemas = {
  /** A job became claimable in an organisation: dispatchers holding its agents look for work. */
  job_queued: z.object({ orgId: uuid, jobId: uuid }),
  /** A job's status changed (an event was appended): log streams re-read it. Sent by a trigger. */
  job_changed: z.object({ jobId: uuid, status: z.string() }),
  /** Log lines were stored, up to `lastSeq`: one per INSERT. Sent by a trigger as `<job id>:<seq>`. */
  log_appended: z.object({ jobId: uuid, lastSeq: z.number().int().min(0) }),
  /** A job must be stopped on the agent running it, wherever that agent's stream is held. */
  agent_cancel: z.object({ jobId: uuid, agentId: uuid, attempt, reason: z.string(), graceMs: z.number().int().min(0) }),
  /** A run is no longer its agent's (the job went back to the queue): the agent drops it, its slot is free. */
  agent_drop: z.object({ jobId: uuid, agentId: uuid, attempt, reason: z.string() }),
  /** An agent token was revoked: streams authenticated with it end. */
  agent_token_revoked: z.object({ tokenId: uuid }),
  /** An agent opened a stream: a replica holding an older stream of the same agent ends it. */
  agent_session_opened: z.object({ agentId: uuid, sessionId: uuid }),
} as const;

/** Every channel of the bus, with the payload it carries. */
export type BusEvents = { [C in keyof typeof payloadSchemas]: z.infer<(typeof payloadSchemas)[C]> };
export type Channel = keyof BusEvents;

export type JobQueuedPayload = BusEvents['job_queued'];
export type JobChangedPayload = BusEvents['job_changed'];
export type AgentCancelPayload = BusEvents['agent_cancel'];
export type AgentDropPayload = BusEvents['agent_drop'];
export type TokenRevokedPayload = BusEvents['agent_token_revoked'];
export type AgentSessionOpenedPayload = BusEvents['agent_session_opened'];

interface Codec<T> {
  encode(event: T): string;
  /** Undefined for a payload this version cannot read. */
  decode(raw: string): T | undefined;
}

function jsonCodec<C extends Channel>(channel: C): Codec<BusEvents[C]> {
  const schema = payloadSchemas[channel] as unknown as z.ZodType<BusEvents[C]>;
  return {
    encode: (event) => JSON.stringify(event),
    decode(raw) {
      try {
        const parsed = schema.safeParse(JSON.parse(raw));
        return parsed.success ? parsed.data : undefined;
      } catch {
        return undefined;
      }
    },
  };
}

/** `<job id>:<highest seq stored>`, as the log_lines trigger writes it (cheaper to build in SQL than JSON). */
const logAppendedCodec: Codec<BusEvents['log_appended']> = {
  encode: ({ jobId, lastSeq }) => `${jobId}:${lastSeq}`,
  decode(raw) {
    const colon = raw.lastIndexOf(':');
    const parsed = payloadSchemas.log_appended.safeParse({ jobId: raw.slice(0, colon), lastSeq: Number(raw.slice(colon + 1)) });
    return colon > 0 && parsed.success && Number.isSafeInteger(parsed.data.lastSeq) ? parsed.data : undefined;
  },
};

export const codecs: { [C in Channel]: Codec<BusEvents[C]> } = {
  job_queued: jsonCodec('job_queued'),
  job_changed: jsonCodec('job_changed'),
  log_appended: logAppendedCodec,
  agent_cancel: jsonCodec('agent_cancel'),
  agent_drop: jsonCodec('agent_drop'),
  agent_token_revoked: jsonCodec('agent_token_revoked'),
  agent_session_opened: jsonCodec('agent_session_opened'),
};

/** The channel names by what they announce. */
export const channels = {
  jobQueued: 'job_queued',
  jobChanged: 'job_changed',
  logAppended: 'log_appended',
  agentCancel: 'agent_cancel',
  agentDrop: 'agent_drop',
  tokenRevoked: 'agent_token_revoked',
  agentSessionOpened: 'agent_session_opened',
} as const satisfies Record<string, Channel>;

/** Reads a `log_appended` payload; undefined for one this version cannot read. */
export function parseLogAppended(payload: string): { jobId: string; lastSeq: number } | undefined {
  return codecs.log_appended.decode(payload);
}

/** What the bus needs of the database: NOTIFY and LISTEN (DatabaseHandle has both). */
export interface NotifyTransport {
  notify(channel: string, payload: string): Promise<void>;
  listen(channel: string, listener: (payload: string) => void): Promise<() => Promise<void>>;
}

/** Publishes an event to every replica. */
export type Publish = <C extends Channel>(channel: C, event: BusEvents[C]) => Promise<void>;

export class EventBus {
  constructor(
    private readonly transport: NotifyTransport,
    private readonly warn: (msg: string, details: Record<string, unknown>) => void,
  ) {}

  readonly publish: Publish = (channel, event) => this.transport.notify(channel, codecs[channel].encode(event));

  /** Calls `handler` with each event on the channel; a payload it cannot read is logged and dropped. */
  subscribe<C extends Channel>(channel: C, handler: (event: BusEvents[C]) => void): Promise<() => Promise<void>> {
    return this.transport.listen(channel, (raw) => {
      const event = codecs[channel].decode(raw);
      if (event === undefined) return this.warn('unreadable notification', { channel, payload: raw.slice(0, 200) });
      handler(event);
    });
  }
}
