import type { ApiHandlers } from '../../../generated/openapi/handlers.js';
import type { components } from '../../../generated/openapi/schema.js';
import type { RequestContext } from '../context.js';

type Readiness = components['schemas']['Readiness'];

type HealthHandlers = Pick<ApiHandlers<RequestContext>, 'getHealth' | 'getReadiness'>;

export interface ReadinessProbes {
  database(): Promise<void>;
  temporal(): Promise<void>;
  /** Resolves with the number of migrations not yet applied. */
  pendingMigrations(): Promise<number>;
}

const PROBE_TIMEOUT_MS = 2000;

async function passes(probe: () => Promise<unknown>, accept: (value: unknown) => boolean = () => true): Promise<'ok' | 'failing'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('probe timed out')), PROBE_TIMEOUT_MS);
    });
    return accept(await Promise.race([probe(), timeout])) ? 'ok' : 'failing';
  } catch {
    return 'failing';
  } finally {
    clearTimeout(timer);
  }
}

export function healthHandlers(probes: ReadinessProbes): HealthHandlers {
  return {
    async getHealth() {
      return { status: 200, body: { status: 'ok' } };
    },

    getReadiness: () => readiness(probes),
  };
}

/** openapi.yaml's Readiness, with its status: also what a process without the API answers (metrics-endpoint.ts). */
export async function readiness(probes: ReadinessProbes): Promise<{ status: 200 | 503; body: Readiness }> {
  const [database, temporal, migrations] = await Promise.all([
    passes(probes.database),
    passes(probes.temporal),
    passes(probes.pendingMigrations, (pending) => pending === 0),
  ]);
  const checks = { database, temporal, migrations };
  const ready = Object.values(checks).every((state) => state === 'ok');
  return ready ? { status: 200, body: { status: 'ready', checks } } : { status: 503, body: { status: 'not_ready', checks } };
}
