// Checks every HTTP response a test sees against openapi.yaml: the operation must declare the
// status, the content type must match, the body must validate against the declared schema and the
// required headers must be present. A mismatch fails the test that made the request.
import fs from 'node:fs';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import { Ajv2020 } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';
import { parse } from 'yaml';

type Schema = Record<string, unknown>;
interface MediaType {
  schema?: Schema;
}
interface ResponseObject {
  $ref?: string;
  content?: Record<string, MediaType>;
  headers?: Record<string, { required?: boolean; $ref?: string }>;
}
interface Operation {
  operationId: string;
  responses: Record<string, ResponseObject>;
}

const spec = parse(fs.readFileSync(new URL('../../openapi.yaml', import.meta.url), 'utf8')) as {
  paths: Record<string, Record<string, Operation>>;
  components: { responses: Record<string, ResponseObject> };
};

const ajv = new Ajv2020({ strict: false, allErrors: true });
formats.default(ajv);
ajv.addSchema(spec as unknown as Schema, 'openapi');

const routes = Object.entries(spec.paths).flatMap(([template, item]) =>
  Object.entries(item)
    .filter(([method]) => ['get', 'post', 'put', 'patch', 'delete'].includes(method))
    .map(([method, operation]) => ({
      method: method.toUpperCase(),
      template,
      pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`),
      operation,
    })),
);

function pointerEscape(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}

function resolveResponse(response: ResponseObject): { response: ResponseObject; pointer: string | undefined } {
  if (response.$ref) {
    const name = response.$ref.split('/').pop() ?? '';
    const target = spec.components.responses[name];
    if (!target) throw new Error(`openapi.yaml: dangling ${response.$ref}`);
    return { response: target, pointer: `#/components/responses/${pointerEscape(name)}` };
  }
  return { response, pointer: undefined };
}

export class ContractViolation extends Error {}

/** Which operations and statuses this worker has checked. */
export const checkedResponses = new Map<string, Set<number>>();

/**
 * Where every worker appends what it checked, one `<operationId> <status>` line each, for the coverage
 * reporter (test/support/contract-coverage-reporter.ts) to read when the run ends; it names the folder.
 */
export const COVERAGE_DIR_VARIABLE = 'AGENT_JOBS_CONTRACT_COVERAGE_DIR';

export function recordResponse(operationId: string, status: number): void {
  const seen = checkedResponses.get(operationId) ?? new Set<number>();
  if (seen.has(status)) return;
  seen.add(status);
  checkedResponses.set(operationId, seen);
  const dir = process.env[COVERAGE_DIR_VARIABLE];
  if (dir) fs.appendFileSync(path.join(dir, `${process.pid}-${threadId}.txt`), `${operationId} ${status}\n`);
}

export async function assertMatchesContract(method: string, url: string, response: Response): Promise<void> {
  const { pathname } = new URL(url);
  const route = routes.find((r) => r.method === method && r.pattern.test(pathname));
  if (!route) {
    await assertUndocumentedRequest(method, pathname, response);
    return;
  }
  const { operation } = route;
  const declared = operation.responses[String(response.status)] ?? operation.responses.default;
  if (!declared) {
    throw new ContractViolation(`${operation.operationId} answered ${response.status}, which openapi.yaml does not declare (${Object.keys(operation.responses).join(', ')})`);
  }
  const { response: resolved, pointer: refPointer } = resolveResponse(declared);
  const base = refPointer ?? `#/paths/${pointerEscape(route.template)}/${method.toLowerCase()}/responses/${response.status}`;

  for (const [name, header] of Object.entries(resolved.headers ?? {})) {
    if (header.required && !response.headers.has(name)) throw new ContractViolation(`${operation.operationId} ${response.status}: missing required header ${name}`);
  }

  const text = await response.text();
  const contentType = (response.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
  const content = resolved.content ?? {};
  if (Object.keys(content).length === 0) {
    if (text.length > 0) throw new ContractViolation(`${operation.operationId} ${response.status} declares no body but sent ${text.length} bytes`);
  } else {
    const media = content[contentType];
    if (!media) throw new ContractViolation(`${operation.operationId} ${response.status}: content type ${contentType || '(none)'} is not one of ${Object.keys(content).join(', ')}`);
    if (media.schema && contentType.endsWith('json')) {
      const validate = ajv.getSchema(`openapi${base}/content/${pointerEscape(contentType)}/schema`);
      if (!validate) throw new ContractViolation(`cannot compile the schema at ${base}`);
      const body: unknown = JSON.parse(text);
      if (!validate(body)) {
        throw new ContractViolation(`${operation.operationId} ${response.status} body does not match openapi.yaml: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 2000)}`);
      }
    }
  }
  recordResponse(operation.operationId, response.status);
}

/**
 * A request openapi.yaml has no operation for: a path it has, with another method, is a 405 problem
 * whose Allow names the declared methods (HEAD with GET); any other path is a 404 problem. Either may
 * instead be refused for its framing (a bad or overlong URL, oversized headers) before routing.
 */
async function assertUndocumentedRequest(method: string, pathname: string, response: Response): Promise<void> {
  const declared = routes.filter((r) => r.pattern.test(pathname)).map((r) => r.method);
  const expected = declared.length > 0 ? 405 : 404;
  if (![expected, 400, 414, 431].includes(response.status)) {
    throw new ContractViolation(`${method} ${pathname} answered ${response.status}, but openapi.yaml has no such operation: expected ${expected}`);
  }
  if ((response.headers.get('content-type') ?? '').split(';')[0] !== 'application/problem+json') {
    throw new ContractViolation(`${method} ${pathname} answered ${response.status} without a problem`);
  }
  const validate = ajv.getSchema('openapi#/components/schemas/Problem');
  const body: unknown = await response.json();
  if (!validate?.(body)) throw new ContractViolation(`${method} ${pathname} ${response.status}: the body is not a Problem: ${ajv.errorsText(validate?.errors)}`);
  if (response.status === 405) {
    const allow = (response.headers.get('allow') ?? '').split(',').map((m) => m.trim()).filter(Boolean);
    for (const m of declared) if (!allow.includes(m)) throw new ContractViolation(`${method} ${pathname} 405: Allow "${allow.join(', ')}" leaves out ${m}`);
  }
}

/** A fetch that checks every response against the contract before handing it back. */
export const contractCheckedFetch: typeof fetch = async (input, init) => {
  const request = new Request(input, init);
  const response = await fetch(request);
  await assertMatchesContract(request.method, request.url, response.clone());
  return response;
};

/** Checks one frame of the log stream WebSocket against `LogStreamFrame`. */
export function assertFrameMatchesContract(frame: unknown): void {
  const validate = ajv.getSchema('openapi#/components/schemas/LogStreamFrame');
  if (!validate) throw new ContractViolation('cannot compile LogStreamFrame');
  if (!validate(frame)) throw new ContractViolation(`a log stream frame does not match openapi.yaml: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(frame).slice(0, 2000)}`);
  // A frame only arrives over an upgraded connection: the upgrade answered 101.
  recordResponse(STREAM_OPERATION, 101);
}

/** The WebSocket operation; its close codes are recorded beside its HTTP statuses. */
export const STREAM_OPERATION = 'streamJobLogs';

/** Checks a close code the server chose against `LogStreamCloseCode`. */
export function assertCloseCodeInContract(code: number): void {
  const validate = ajv.getSchema('openapi#/components/schemas/LogStreamCloseCode');
  if (!validate?.(code)) throw new ContractViolation(`the log stream closed with ${code}, which openapi.yaml does not list`);
  recordResponse(STREAM_OPERATION, code);
}
