// Agent tokens (`ajt_…`) are for the gRPC gateway. Sent to the HTTP API, where only user access tokens
// count, the JWT verifier would answer "Invalid Compact JWS", which tells the caller nothing; this says
// what they sent and what to send instead.
import { UnauthenticatedError } from '../errors.js';
import type { UserAuthenticator } from '../services/auth/user-authenticator.js';

/** The prefix AgentTokensService gives every agent token secret. */
const AGENT_TOKEN_PREFIX = 'ajt_';

export function refusingAgentTokens(userAuth: UserAuthenticator): UserAuthenticator {
  return {
    authenticate(authorizationHeader) {
      const token = authorizationHeader?.replace(/^bearer\s+/i, '').trim();
      if (token?.startsWith(AGENT_TOKEN_PREFIX)) {
        return Promise.reject(
          new UnauthenticatedError(
            `This is an agent token (${AGENT_TOKEN_PREFIX}…); agents present it to the gRPC gateway. The HTTP API takes a user access token (npm run token in development)`,
          ),
        );
      }
      return userAuth.authenticate(authorizationHeader);
    },
  };
}
