// Mints PropelAuth-shaped access tokens for development and tests: the same claims PropelAuth puts in
// its JWTs, signed RS256 by the local dev key, so @propelauth/node verifies them unchanged.
import { importPKCS8, SignJWT } from 'jose';
import { orgRoles, type OrgRole } from '../access.js';

export interface DevTokenClaims {
  userId: string;
  email?: string;
  orgs: { orgId: string; role: OrgRole; orgName?: string }[];
  /** Lifetime in seconds; negative gives an already expired token (for tests). */
  expiresInSeconds?: number;
}

export async function mintDevToken(privateKeyPem: string, issuer: string, claims: DevTokenClaims): Promise<string> {
  const key = await importPKCS8(privateKeyPem, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const orgIdToOrgMemberInfo = Object.fromEntries(
    claims.orgs.map(({ orgId, role, orgName }) => [
      orgId,
      {
        org_id: orgId,
        org_name: orgName ?? orgId,
        url_safe_org_name: orgName ?? orgId,
        org_metadata: {},
        user_role: role,
        // PropelAuth lists the role and every role below it.
        inherited_user_roles_plus_current_role: orgRoles.slice(0, orgRoles.indexOf(role) + 1),
        user_permissions: [],
      },
    ]),
  );
  return new SignJWT({
    user_id: claims.userId,
    email: claims.email ?? `${claims.userId}@example.test`,
    org_id_to_org_member_info: orgIdToOrgMemberInfo,
  })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
    .setSubject(claims.userId)
    .setIssuer(issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + (claims.expiresInSeconds ?? 3600))
    .sign(key);
}
