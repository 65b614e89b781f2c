import type { FastifyRequest } from 'fastify';
import { UnauthenticatedError } from '../errors.js';
import type { Caller } from '../services/access.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the bearerAuth security handler once the access token is verified. */
    caller?: Caller;
  }
}

/** What every handler gets besides its validated input. */
export interface RequestContext {
  /** The verified caller; only operations with `security: []` may run without one. */
  caller(): Caller;
  requestUrl: string;
}

export function requestContext(request: FastifyRequest): RequestContext {
  return {
    caller() {
      if (!request.caller) throw new UnauthenticatedError();
      return request.caller;
    },
    requestUrl: request.url,
  };
}
