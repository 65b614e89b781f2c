// `npm run token -- --org <orgId> --user <userId> --role <Owner|Admin|Member> [--email e] [--ttl 1h]`
// Prints a dev access token the server accepts: PropelAuth's claims, signed by the key in DATA_DIR.
import { parseArgs } from 'node:util';
import ms from 'ms';
import { loadConfig } from '../src/config.js';
import { orgRoles, type OrgRole } from '../src/services/access.js';
import { loadOrCreateDevKeys } from '../src/services/auth/dev-keys.js';
import { mintDevToken } from '../src/services/auth/dev-tokens.js';

function fail(message: string): never {
  console.error(`token: ${message}`);
  console.error('usage: npm run token -- --org <orgId> --user <userId> --role <Owner|Admin|Member> [--email <email>] [--ttl 1h]');
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    org: { type: 'string', multiple: true },
    user: { type: 'string' },
    role: { type: 'string', default: 'Member' },
    email: { type: 'string' },
    ttl: { type: 'string', default: '1h' },
  },
});

const config = loadConfig(process.env);
if (config.auth.mode !== 'dev') fail('PROPELAUTH_AUTH_URL is set: tokens come from PropelAuth, not from this script');
if (!values.org?.length) fail('--org is required');
if (!values.user) fail('--user is required');
if (!orgRoles.includes(values.role as OrgRole)) fail(`--role must be one of ${orgRoles.join(', ')}`);
const ttlMs = ms(values.ttl as ms.StringValue);
if (ttlMs === undefined || !Number.isFinite(ttlMs)) fail('--ttl must be a duration such as 30m or 12h');
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
for (const org of values.org) if (!uuid.test(org)) fail(`--org ${org} is not a uuid (PropelAuth organisation ids are uuids)`);

const keys = loadOrCreateDevKeys(config.auth.keyDir);
const token = await mintDevToken(keys.privateKeyPem, config.auth.issuer, {
  userId: values.user,
  ...(values.email ? { email: values.email } : {}),
  orgs: values.org.map((orgId) => ({ orgId, role: values.role as OrgRole })),
  expiresInSeconds: Math.round(ttlMs / 1000),
});
console.log(token);
