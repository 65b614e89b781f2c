// Verifies user access tokens with @propelauth/node: against the PropelAuth project in production,
// against the local dev key otherwise (manualTokenVerificationMetadata), with the same code path.
import { initBaseAuth, type User } from '@propelauth/node';
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

  return {
    async authenticate(authorizationHeader) {
      if (!authorizationHeader) throw new UnauthenticatedError('Missing Authorization header (Bearer access token)');
      let user: User;
      try {
        user = await auth.validateAccessTokenAndGetUser(authorizationHeader);
      } catch (err) {
        const reason = err instanceof Error && err.message ? err.message : 'invalid token';
        throw new UnauthenticatedError(`Access token rejected: ${reason}`);
      }
      return toCaller(user);
    },
  };
}

function toCaller(user: User): Caller {
  const memberships = new Map<string, OrgMembership>();
  for (const [orgId, info] of Object.entries(user.orgIdToOrgMemberInfo ?? {})) {
    memberships.set(orgId, { orgId, roles: info.userInheritedRolesPlusCurrentRole ?? [info.userAssignedRole] });
  }
  return { userId: user.userId, email: user.email, memberships };
}
