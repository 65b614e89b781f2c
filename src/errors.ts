// Every expected failure is an AppError with a canonical code. One table maps each code to its HTTP
// status, gRPC status, WebSocket close code and RFC 9457 problem type, so the transports never decide this themselves.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { LogStreamCloseCode } from '../generated/openapi/frames.js';

// WebSocket close codes come from openapi.yaml (LogStreamCloseCode).
const ws = { badRequest: LogStreamCloseCode.BadRequest, unauthenticated: LogStreamCloseCode.Unauthenticated, forbidden: LogStreamCloseCode.Forbidden, notFound: LogStreamCloseCode.NotFound, internal: LogStreamCloseCode.InternalError } as const;

export const errorCodes = {
  invalid_argument: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, ws: ws.badRequest, title: 'Invalid argument' },
  unauthenticated: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, ws: ws.unauthenticated, title: 'Unauthenticated' },
  permission_denied: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED, ws: ws.forbidden, title: 'Permission denied' },
  not_found: { http: 404, grpc: GrpcStatus.NOT_FOUND, ws: ws.notFound, title: 'Not found' },
  already_exists: { http: 409, grpc: GrpcStatus.ALREADY_EXISTS, ws: ws.badRequest, title: 'Already exists' },
  conflict: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, ws: ws.badRequest, title: 'Conflict' },
  idempotency_key_in_use: { http: 409, grpc: GrpcStatus.ABORTED, ws: ws.badRequest, title: 'Idempotency key in use' },
  idempotency_key_reused: { http: 422, grpc: GrpcStatus.INVALID_ARGUMENT, ws: ws.badRequest, title: 'Idempotency key reused' },
  payload_too_large: { http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED, ws: ws.badRequest, title: 'Payload too large' },
  unsupported_media_type: { http: 415, grpc: GrpcStatus.INVALID_ARGUMENT, ws: ws.badRequest, title: 'Unsupported media type' },
  upgrade_required: { http: 426, grpc: GrpcStatus.FAILED_PRECONDITION, ws: ws.badRequest, title: 'Upgrade required' },
  resource_exhausted: { http: 429, grpc: GrpcStatus.RESOURCE_EXHAUSTED, ws: ws.internal, title: 'Resource exhausted' },
  unavailable: { http: 503, grpc: GrpcStatus.UNAVAILABLE, ws: ws.internal, title: 'Service unavailable' },
  internal: { http: 500, grpc: GrpcStatus.INTERNAL, ws: ws.internal, title: 'Internal error' },
} as const;

export type ErrorCode = keyof typeof errorCodes;

export function problemType(code: ErrorCode): string {
  return `urn:agent-jobs:problem:${code.replaceAll('_', '-')}`;
}

/** A field-level complaint: `pointer` is a JSON pointer into the request (`/prompt`, `/query/cursor`). */
export interface FieldError {
  pointer: string;
  message: string;
}

export class AppError extends Error {
  readonly statusCode: number;
  readonly fieldErrors: FieldError[];
  /** Seconds a client should wait before retrying (rendered as `Retry-After`). */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: { cause?: unknown; fieldErrors?: FieldError[]; retryAfterSeconds?: number } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.statusCode = errorCodes[code].http;
    this.fieldErrors = options.fieldErrors ?? [];
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get grpcStatus(): GrpcStatus {
    return errorCodes[this.code].grpc;
  }

  /** The close code a WebSocket stream ends with for this error. */
  get closeCode(): number {
    return errorCodes[this.code].ws;
  }
}

export class InvalidArgumentError extends AppError {
  constructor(message: string, fieldErrors: FieldError[] = []) {
    super('invalid_argument', message, { fieldErrors });
  }
}

export class UnauthenticatedError extends AppError {
  constructor(message = 'A valid access token is required') {
    super('unauthenticated', message);
  }
}

export class PermissionDeniedError extends AppError {
  constructor(message: string) {
    super('permission_denied', message);
  }
}

export class NotFoundError extends AppError {
  override readonly statusCode = 404;
  constructor(what: string) {
    super('not_found', `${what} was not found`);
  }
}

export class ConflictError extends AppError {
  constructor(message: string) {
    super('conflict', message);
  }
}

export class AlreadyExistsError extends AppError {
  constructor(message: string, fieldErrors: FieldError[] = []) {
    super('already_exists', message, { fieldErrors });
  }
}

/** The first request with this `Idempotency-Key` is still being processed: retry when it has answered. */
export class IdempotencyKeyInUseError extends AppError {
  constructor(options: { cause?: unknown } = {}) {
    super('idempotency_key_in_use', 'A request with this Idempotency-Key is still being processed; retry once it has been answered', options);
  }
}

/** The `Idempotency-Key` was used for another request (another body, or another operation's path). */
export class IdempotencyKeyReusedError extends AppError {
  constructor() {
    super('idempotency_key_reused', 'This Idempotency-Key was already used for a different request; use a new key for a new request', {
      fieldErrors: [{ pointer: '/headers/idempotency-key', message: 'was used for a request with another body' }],
    });
  }
}

export class ResourceExhaustedError extends AppError {
  constructor(message: string, retryAfterSeconds: number) {
    super('resource_exhausted', message, { retryAfterSeconds });
  }
}

export class UnavailableError extends AppError {
  /** Every 503 says when to try again (the contract requires Retry-After): by default at once, elsewhere. */
  constructor(message: string, options: { cause?: unknown; retryAfterSeconds?: number } = {}) {
    super('unavailable', message, { cause: options.cause, retryAfterSeconds: options.retryAfterSeconds ?? 1 });
  }
}

/** Socket errors of a dependency that is down or unreachable, as Node reports them. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);
/** node-postgres's own words for a connection it lost or could not get from its pool. */
const LOST_CONNECTION = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection .* closed/i;

/**
 * Whether an unexpected error means the database (or another dependency) cannot be reached for the
 * moment, rather than a bug: socket errors, PostgreSQL's connection exceptions (SQLSTATE class 08)
 * and shutdown states (57P01-57P03), and a pool that lost its connection. Such a failure is
 * answered as 503 with Retry-After, as the contract says, not as a 500. Follows `cause` chains
 * (Drizzle wraps the driver's error).
 */
export function isDependencyUnavailable(err: unknown): boolean {
  for (let current = err, depth = 0; current && depth < 5; depth++) {
    const candidate = current as { code?: unknown; message?: unknown; cause?: unknown };
    const code = typeof candidate.code === 'string' ? candidate.code : '';
    if (UNREACHABLE_CODES.has(code) || code.startsWith('08') || ['57P01', '57P02', '57P03'].includes(code)) return true;
    if (typeof candidate.message === 'string' && LOST_CONNECTION.test(candidate.message)) return true;
    current = candidate.cause;
  }
  return false;
}
