// What every failed request must look like from outside: an RFC 9457 problem whose `status` is the
// HTTP status and whose `type` follows from its `code`. The contract check has validated the schema.
import { expect } from 'vitest';
import type { Problem, ProblemCode } from '../../generated/sdk/index.js';

/**
 * Checks `response` is the problem `status`/`code` about the request it answers and returns its body.
 * Pass `body` when the SDK has already read it (its `error`); a raw response is read here.
 */
export async function expectProblem(response: Response, status: number, code: ProblemCode, body?: unknown): Promise<Problem> {
  const problem = (body ?? (await response.json())) as Problem;
  expect(response.status, JSON.stringify(problem)).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json\b/);
  const { pathname, search } = new URL(response.url);
  expect(problem).toMatchObject({
    type: `urn:agent-jobs:problem:${code.replaceAll('_', '-')}`,
    title: expect.any(String),
    status,
    code,
    detail: expect.any(String),
    instance: pathname + search,
  });
  return problem;
}

/** The JSON pointers a validation problem names, in the order it names them. */
export function pointers(problem: Problem): string[] {
  return (problem.errors ?? []).map((e) => e.pointer);
}
