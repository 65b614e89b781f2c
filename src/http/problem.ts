// Renders every failure as an RFC 9457 problem. Known failures (AppError, Fastify's request errors,
// schema validation, security) keep their meaning; anything else is a 500 whose detail never leaks.
// Fastify's framework errors (bad URL, overlong path segment, no route, oversized headers) come here too.
import http from 'node:http';
import type { FastifyError } from 'fastify';
import { AppError, errorCodes, isDependencyUnavailable, problemType, type ErrorCode, type FieldError } from '../errors.js';

/**
 * Failures of HTTP framing itself, which no service raises and no other transport has, so they stay
 * out of the canonical code table in errors.ts. Their problem types follow its URN scheme.
 */
const httpOnlyCodes = {
  method_not_allowed: { http: 405, title: 'Method not allowed' },
  request_timeout: { http: 408, title: 'Request timeout' },
  uri_too_long: { http: 414, title: 'URI too long' },
  request_header_fields_too_large: { http: 431, title: 'Request header fields too large' },
} as const;

export type ProblemCode = ErrorCode | keyof typeof httpOnlyCodes;

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  code: ProblemCode;
  errors?: FieldError[];
}

export interface RenderedProblem {
  problem: Problem;
  headers: Record<string, string>;
  /** True when the failure was ours, not the client's: it deserves a log line with the stack. */
  unexpected: boolean;
}

interface AjvIssue {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}

/** Where each validated part of a request lives, for messages and JSON pointers. */
const requestParts: Record<string, { name: string; plural: boolean; pointer: string }> = {
  body: { name: 'body', plural: false, pointer: '' },
  querystring: { name: 'query parameters', plural: true, pointer: '/query' },
  params: { name: 'path parameters', plural: true, pointer: '/params' },
  headers: { name: 'headers', plural: true, pointer: '/headers' },
};

/** Fastify's own request errors, by their `code`, with a detail that does not echo the request back. */
const fastifyDetails: Record<string, { code: ProblemCode; detail: string }> = {
  FST_ERR_BAD_URL: { code: 'invalid_argument', detail: 'The URL path is not valid: it has a malformed percent-encoding' },
  FST_ERR_MAX_PARAM_LENGTH: { code: 'uri_too_long', detail: 'A path segment is longer than 100 characters; ids are uuids' },
};

/** Fastify's own request errors, by their `code`. */
const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_argument',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_argument',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_argument',
  FST_ERR_VALIDATION: 'invalid_argument',
};

/** What the failing route accepts, for messages that should say what to send instead. */
export interface ProblemHints {
  /** The media types the operation's request body may have. */
  acceptedMediaTypes?: readonly string[];
  /** The Content-Type the request sent. */
  sentMediaType?: string | undefined;
}

export function renderProblem(err: unknown, instance: string, hints: ProblemHints = {}): RenderedProblem {
  const appError = unwrapAppError(err);
  if (appError) {
    const headers: Record<string, string> = {};
    if (appError.retryAfterSeconds !== undefined) headers['retry-after'] = String(appError.retryAfterSeconds);
    return {
      problem: build(appError.code, appError.code === 'internal' ? 'An unexpected error occurred' : appError.message, instance, appError.fieldErrors),
      headers,
      unexpected: appError.statusCode >= 500,
    };
  }

  const fastifyError = err as Partial<FastifyError> & { validation?: AjvIssue[]; validationContext?: string };
  if (Array.isArray(fastifyError.validation)) {
    const part = requestParts[fastifyError.validationContext ?? 'body'] ?? requestParts.body!;
    const errors = validationFieldErrors(part.pointer, fastifyError.validation);
    return { problem: build('invalid_argument', `The request's ${part.name} ${part.plural ? 'are' : 'is'} invalid`, instance, errors), headers: {}, unexpected: false };
  }
  const known = fastifyError.code ? fastifyDetails[fastifyError.code] : undefined;
  if (known) {
    // A 414's URL is the overlong thing itself: its instance keeps the start of each long segment only.
    const shown = known.code === 'uri_too_long' ? instance.replace(/[^/?]{101,}/g, (segment) => `${segment.slice(0, 100)}...`) : instance;
    return { problem: build(known.code, known.detail, shown), headers: {}, unexpected: false };
  }
  const code = fastifyError.code ? fastifyCodes[fastifyError.code] : undefined;
  if (code === 'unsupported_media_type' || fastifyError.statusCode === 415) {
    return { problem: build('unsupported_media_type', unsupportedMediaType(fastifyError, hints), instance), headers: {}, unexpected: false };
  }
  if (code) {
    return { problem: build(code, fastifyError.message ?? errorCodes[code].title, instance), headers: {}, unexpected: false };
  }
  // A JSON body that does not parse reaches us as a SyntaxError with status 400.
  if (fastifyError.statusCode === 400) {
    return { problem: build('invalid_argument', fastifyError.message ?? 'Bad request', instance), headers: {}, unexpected: false };
  }
  // The database away for a moment is the client's to retry, as the contract's 503 says.
  if (isDependencyUnavailable(err)) {
    return { problem: build('unavailable', 'The database is unreachable for the moment; retry shortly', instance), headers: { 'retry-after': String(DEPENDENCY_RETRY_AFTER_SECONDS) }, unexpected: true };
  }
  return { problem: build('internal', 'An unexpected error occurred', instance), headers: {}, unexpected: true };
}

/** What a 503 for an unreachable database asks clients to wait. */
const DEPENDENCY_RETRY_AFTER_SECONDS = 5;

/** Fastify names no type in its 415; the problem says which one was sent and which the operation takes. */
function unsupportedMediaType(err: Partial<FastifyError>, hints: ProblemHints): string {
  const sent = hints.sentMediaType ?? err.message?.match(/Unsupported Media Type:?\s*(.+)$/i)?.[1]?.trim();
  const accepted = hints.acceptedMediaTypes?.length ? hints.acceptedMediaTypes.join(' or ') : 'application/json';
  return `Content-Type ${sent ? `"${sent}" ` : ''}is not supported; send ${accepted}`;
}

export function build(code: ProblemCode, detail: string, instance: string, errors: FieldError[] = []): Problem {
  const { http: status, title } = isHttpOnly(code) ? httpOnlyCodes[code] : errorCodes[code];
  const type = isHttpOnly(code) ? `urn:agent-jobs:problem:${code.replaceAll('_', '-')}` : problemType(code);
  return { type, title, status, detail, instance: problemInstance(instance), code, ...(errors.length ? { errors } : {}) };
}

function isHttpOnly(code: ProblemCode): code is keyof typeof httpOnlyCodes {
  return Object.hasOwn(httpOnlyCodes, code);
}

/** Longer than any path of the API with its query (a stray token in it included); past it, not worth echoing. */
const MAX_INSTANCE_LENGTH = 4096;

/**
 * The request path as `instance` (a URI reference): a malformed percent-escape, which is what makes
 * a URL bad, is escaped itself; characters a URI cannot hold are percent-encoded; an overlong one is cut.
 */
export function problemInstance(url: string): string {
  const escaped = url.replace(/%(?![0-9A-Fa-f]{2})/g, '%25').replace(/[^A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]/gu, percentEncode);
  if (escaped.length <= MAX_INSTANCE_LENGTH) return escaped;
  // Never cut inside a percent-escape.
  return escaped.slice(0, MAX_INSTANCE_LENGTH).replace(/%[0-9A-Fa-f]?$/, '');
}

function percentEncode(character: string): string {
  return [...Buffer.from(character, 'utf8')].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

/**
 * The raw HTTP answer to a request Node could not parse (headers too large, a malformed request line),
 * which never reaches Fastify's routing or error handler. The URL is whatever request line came through.
 */
export function clientErrorResponse(err: { code?: string; rawPacket?: unknown }): string {
  // Node hands over the bytes it had read as a Buffer (Fastify's type says otherwise).
  const target = (Buffer.isBuffer(err.rawPacket) ? err.rawPacket : Buffer.alloc(0))
    .toString('latin1').match(/^[A-Z]+ (\S+) HTTP\//)?.[1] ?? '/';
  const problem =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? build('request_header_fields_too_large', 'The request headers are larger than the server accepts (16 KiB)', target)
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? build('request_timeout', 'The request did not arrive in time', target)
        : build('invalid_argument', 'The request is not valid HTTP', target);
  const body = JSON.stringify(problem);
  return [
    `HTTP/1.1 ${problem.status} ${http.STATUS_CODES[problem.status]}`,
    'Content-Type: application/problem+json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    '',
    body,
  ].join('\r\n');
}

/**
 * AppErrors thrown by a security handler arrive wrapped in fastify-openapi-glue's SecurityError
 * (statusCode 401, `errors` holding what each scheme threw).
 */
function unwrapAppError(err: unknown): AppError | undefined {
  if (err instanceof AppError) return err;
  const wrapped = (err as { errors?: unknown }).errors;
  if (Array.isArray(wrapped)) {
    const inner = wrapped.find((e): e is AppError => e instanceof AppError);
    if (inner) return inner;
  }
  if ((err as { name?: string; statusCode?: number }).name === 'Unauthorized' && (err as { statusCode?: number }).statusCode === 401) {
    return new AppError('unauthenticated', 'A valid access token is required');
  }
  return undefined;
}

/** Schema complaints about one part of a request (`/query`, `/params`, the body) as one entry per field. */
export function validationFieldErrors(base: string, issues: readonly AjvIssue[]): FieldError[] {
  // `if` only says which branch failed; the branch's own error names the field.
  return onePerField(issues.filter((issue) => issue.keyword !== 'if').map((issue) => fieldError(base, issue)));
}

/** Turns one schema complaint into a JSON pointer at the offending field and a sentence about it. */
function fieldError(base: string, issue: AjvIssue): FieldError {
  let pointer = `${base}${issue.instancePath ?? ''}`;
  let message = issue.message ?? 'is invalid';
  const params = issue.params ?? {};
  if (issue.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') {
    pointer = `${pointer}/${escapePointer(params.additionalProperty)}`;
    message = 'is not a known field';
  } else if (issue.keyword === 'required' && typeof params.missingProperty === 'string') {
    pointer = `${pointer}/${escapePointer(params.missingProperty)}`;
    message = 'is required';
  } else if (issue.keyword === 'false schema') {
    message = 'is not allowed here';
  } else if (issue.keyword === 'enum' && Array.isArray(params.allowedValues)) {
    // ajv says only "must be equal to one of the allowed values"; a newcomer needs to see them.
    message = `must be one of: ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return { pointer: pointer || '/', message };
}

/** A field that breaks several rules (an empty prompt: too short and blank) is one entry saying each. */
function onePerField(errors: FieldError[]): FieldError[] {
  const byPointer = new Map<string, string[]>();
  for (const { pointer, message } of errors) {
    const messages = byPointer.get(pointer) ?? [];
    if (!messages.includes(message)) messages.push(message);
    byPointer.set(pointer, messages);
  }
  return [...byPointer].map(([pointer, messages]) => ({ pointer, message: messages.join('; ') }));
}

function escapePointer(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}
