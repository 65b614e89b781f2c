// Who is calling and what they may do. Every organisation-scoped operation goes through
// requireOrgRole, so "not a member" and "no such object" look the same from outside.
import { NotFoundError, PermissionDeniedError } from '../errors.js';

export const orgRoles = ['Member', 'Admin', 'Owner'] as const;
export type OrgRole = (typeof orgRoles)[number];

export interface OrgMembership {
  orgId: string;
  /** The caller's role and every role it inherits (PropelAuth's inherited_user_roles_plus_current_role). */
  roles: readonly string[];
}

export interface Caller {
  userId: string;
  email: string | undefined;
  memberships: ReadonlyMap<string, OrgMembership>;
}

/** An organisation-scoped request: the caller, checked to be a member of `orgId`. */
export interface OrgScope {
  caller: Caller;
  orgId: string;
}

/**
 * Checks that the caller belongs to the organisation with at least `minimum` role. A non-member gets
 * the same answer as for a missing organisation, so ids of other organisations reveal nothing.
 */
export function requireOrgRole(caller: Caller, orgId: string, minimum: OrgRole): OrgScope {
  const membership = caller.memberships.get(orgId);
  if (!membership) throw new NotFoundError('Organisation');
  if (!hasRole(membership, minimum)) {
    throw new PermissionDeniedError(`This operation needs the ${minimum} role in the organisation`);
  }
  return { caller, orgId };
}

function hasRole(membership: OrgMembership, minimum: OrgRole): boolean {
  // Custom role structures inherit through the list PropelAuth gives; the built-in ladder is the fallback.
  if (membership.roles.includes(minimum)) return true;
  const rank = orgRoles.indexOf(minimum);
  return membership.roles.some((role) => orgRoles.indexOf(role as OrgRole) >= rank);
}
