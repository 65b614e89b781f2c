// Verifies user access tokens with @propelauth/node: against the PropelAuth project in production,
// against the local dev key otherwise (manualTokenVerificationMetadata), with the same code path.
import { initBaseAuth, type User } from '@propelauth/node';
import { decodeJwt } from 'jose';
import type { AuthConfig } from '../../config.js';
import { UnauthenticatedError } from '../../errors.js';
import type { Caller, OrgMembership } from '../access.js';
import { loadOrCreateDevKeys } from './dev-keys.js';

export interface UserAuthenticator {
  /** Takes the raw `Authorization` header value (`Bearer <token>`) and returns the verified caller. */
  authenticate(authorizationHeader: string | undefined): Promise<Caller>;
}

export function createUserAuthenticator(config: AuthConfig): UserAuthenticator {
  const auth =
    config.mode === 'propelauth'
      ? initBaseAuth({
          authUrl: config.authUrl,
          apiKey: config.apiKey,
          ...(config.verifierKey
            ? { manualTokenVerificationMetadata: { verifierKey: config.verifierKey, issuer: new URL(config.authUrl).origin } }
            : {}),
        })
      : initBaseAuth({
          // Never contacted: the verifier key is given, so no metadata is fetched from this URL.
          authUrl: config.issuer,
          apiKey: 'dev',
          manualTokenVerificationMetadata: { verifierKey: loadOrCreateDevKeys(config.keyDir).publicKeyPem, issuer: config.issuer },
        });

  const verified = new VerifiedTokens(VERIFIED_TOKEN_CACHE_SIZE);
  return {
    async authenticate(authorizationHeader) {
      if (!authorizationHeader) throw new UnauthenticatedError('Missing Authorization header (Bearer access token)');
      const cached = verified.get(authorizationHeader);
      if (cached) return cached;
      let user: User;
      try {
        user = await auth.validateAccessTokenAndGetUser(authorizationHeader);
      } catch (err) {
        const reason = err instanceof Error && err.message ? err.message : 'invalid token';
        throw new UnauthenticatedError(`Access token rejected: ${reason}`);
      }
      const caller = toCaller(user);
      verified.set(authorizationHeader, caller, expiryOf(authorizationHeader));
      return caller;
    },
  };
}

const VERIFIED_TOKEN_CACHE_SIZE = 10_000;

/** The token's `exp` in ms; only called on a token the library has just verified. */
function expiryOf(authorizationHeader: string): number {
  const token = authorizationHeader.replace(/^bearer\s+/i, '');
  const exp = decodeJwt(token).exp;
  return typeof exp === 'number' ? exp * 1000 : 0;
}

/**
 * Verified tokens, until they expire. Checking an RS256 signature costs more than the rest of a small
 * request; a client sends the same token many times, and a verified JWT stays valid until its `exp`.
 * Bounded: past the limit the oldest entry goes.
 */
class VerifiedTokens {
  private readonly entries = new Map<string, { caller: Caller; expiresAt: number }>();

  constructor(private readonly limit: number) {}

  get(token: string): Caller | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.entries.delete(token);
      return undefined;
    }
    return entry.caller;
  }

  set(token: string, caller: Caller, expiresAt: number): void {
    if (expiresAt <= Date.now()) return;
    if (this.entries.size >= this.limit) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { caller, expiresAt });
  }
}

function toCaller(user: User): Caller {
  const memberships = new Map<string, OrgMembership>();
  for (const [orgId, info] of Object.entries(user.orgIdToOrgMemberInfo ?? {})) {
    memberships.set(orgId, { orgId, roles: info.userInheritedRolesPlusCurrentRole ?? [info.userAssignedRole] });
  }
  return { userId: user.userId, email: user.email, memberships };
}
