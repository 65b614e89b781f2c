// After the run, prints which status of each operation in openapi.yaml the suite produced (and which close
// codes of the log stream), gathered from every worker (test/support/contract.ts writes them). With
// CONTRACT_COVERAGE=enforce (npm test sets it for the whole suite) the run fails when a declared status
// was never produced, unless EXEMPT says why no test can produce it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';
import { parse } from 'yaml';
import { COVERAGE_DIR_VARIABLE, STREAM_OPERATION } from './contract.js';

/** Declared statuses no test produces on purpose, each with the reason. Keep it short. */
const EXEMPT: Record<string, Record<number, string>> = {
  [STREAM_OPERATION]: {
    1011: 'the internal-error close: no request makes the server fail on purpose',
    4408: 'the too-slow close is followed by dropping the socket, so whether a stuck client still reads it is timing; log-stream.test.ts checks the server closed the viewer as too slow (its metric) and that it resumes',
  },
  // 503 answers an unreachable database: test/database-outage.test.ts cuts the link to PostgreSQL, so
  // only a run without a PostgreSQL server (PGlite runs in the process: no link to cut) lacks them.
  createJob: { 503: 'produced only on PostgreSQL (test/database-outage.test.ts)' },
  cancelJob: { 503: 'produced only on PostgreSQL (test/database-outage.test.ts)' },
};

type Spec = {
  paths: Record<string, Record<string, { operationId?: string; responses?: Record<string, unknown> }>>;
  components: { schemas: Record<string, { enum?: number[] }> };
};

function declaredStatuses(): Map<string, number[]> {
  const spec = parse(fs.readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as Spec;
  const declared = new Map<string, number[]>();
  for (const item of Object.values(spec.paths)) {
    for (const operation of Object.values(item)) {
      if (!operation?.operationId || !operation.responses) continue;
      declared.set(operation.operationId, Object.keys(operation.responses).map(Number).filter(Number.isInteger));
    }
  }
  const closeCodes = spec.components.schemas.LogStreamCloseCode?.enum ?? [];
  declared.set(STREAM_OPERATION, [...(declared.get(STREAM_OPERATION) ?? []), ...closeCodes]);
  return declared;
}

export default class ContractCoverageReporter implements Reporter {
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-jobs-contract-coverage-'));

  onInit(): void {
    // Workers start after this and inherit the variable.
    process.env[COVERAGE_DIR_VARIABLE] = this.dir;
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const produced = new Map<string, Set<number>>();
    for (const file of fs.readdirSync(this.dir)) {
      for (const line of fs.readFileSync(path.join(this.dir, file), 'utf8').split('\n')) {
        const [operationId, status] = line.split(' ');
        if (!operationId || !status) continue;
        const seen = produced.get(operationId) ?? new Set<number>();
        seen.add(Number(status));
        produced.set(operationId, seen);
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    if (testModules.length === 0) return;

    const missing: string[] = [];
    const lines: string[] = [];
    for (const [operationId, statuses] of [...declaredStatuses()].sort(([a], [b]) => a.localeCompare(b))) {
      const seen = produced.get(operationId) ?? new Set<number>();
      const exempt = EXEMPT[operationId] ?? {};
      const absent = statuses.filter((s) => !seen.has(s) && !(s in exempt));
      lines.push(`  ${operationId.padEnd(18)} ${statuses.map((s) => (seen.has(s) ? String(s) : s in exempt ? `(${s})` : `!${s}`)).join(' ')}`);
      missing.push(...absent.map((s) => `${operationId} ${s}`));
    }
    const enforce = process.env.CONTRACT_COVERAGE === 'enforce';
    process.stdout.write(`\nContract coverage: statuses of openapi.yaml produced by the suite (!n never, (n) exempt)\n${lines.join('\n')}\n`);
    if (missing.length === 0) {
      process.stdout.write('Contract coverage: every declared status was produced\n');
    } else if (enforce) {
      process.stdout.write(`Contract coverage: FAILED, never produced: ${missing.join(', ')}\n`);
      process.exitCode = 1;
    } else {
      process.stdout.write(`Contract coverage: ${missing.length} declared status(es) not produced by the files run (enforced with CONTRACT_COVERAGE=enforce)\n`);
    }
  }
}
