// `npm run token -- --org <orgId> --user <userId> --role <Owner|Admin|Member> [--email e] [--ttl 1h]`
// Prints a dev access token the server accepts: PropelAuth's claims, signed by the key in DATA_DIR.
import { parseArgs } from 'node:util';
import ms from 'ms';
import { loadConfig } from '../src/config.js';
import { orgRoles, type OrgRole } from '../src/services/access.js';
import { loadOrCreateDevKeys } from '../src/services/auth/dev-keys.js';
import { mintDevToken } from '../src/services/auth/dev-tokens.js';

const USAGE = `usage: npm run token -- --org <orgId> --user <userId> [--role <Owner|Admin|Member>] [--email <email>] [--ttl 1h]

Prints a dev access token (PropelAuth's claims, signed by the key in DATA_DIR) for the server's dev auth.
  --org    an organisation id (a uuid); repeat for several organisations
  --user   the user id the token names
  --role   the role in each organisation, any letter case (default Member)
  --email  the user's email (optional)
  --ttl    how long the token is valid, e.g. 30m, 12h (default 1h)`;

function fail(message: string): never {
  console.error(`token: ${message}`);
  console.error(USAGE);
  process.exit(2);
}

function parse() {
  try {
    return parseArgs({
      options: {
        help: { type: 'boolean', short: 'h' },
        org: { type: 'string', multiple: true },
        user: { type: 'string' },
        role: { type: 'string', default: 'Member' },
        email: { type: 'string' },
        ttl: { type: 'string', default: '1h' },
      },
    }).values;
  } catch (err) {
    // parseArgs explains an unknown option or a missing value well; the stack trace adds nothing.
    return fail(err instanceof Error ? err.message : String(err));
  }
}

const values = parse();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
// PropelAuth's role names are capitalised; people type them in any case.
const role: OrgRole | undefined = orgRoles.find((r) => r.toLowerCase() === values.role.toLowerCase());

const config = loadConfig(process.env);
if (config.auth.mode !== 'dev') fail('PROPELAUTH_AUTH_URL is set: tokens come from PropelAuth, not from this script');
if (!values.org?.length) fail('--org is required');
if (!values.user) fail('--user is required');
if (!role) fail(`--role ${values.role} is not a role; use one of ${orgRoles.join(', ')}`);
const ttlMs = ms(values.ttl as ms.StringValue);
if (ttlMs === undefined || !Number.isFinite(ttlMs)) fail('--ttl must be a duration such as 30m or 12h');
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
for (const org of values.org) if (!uuid.test(org)) fail(`--org ${org} is not a uuid (PropelAuth organisation ids are uuids)`);

const keys = loadOrCreateDevKeys(config.auth.keyDir);
const token = await mintDevToken(keys.privateKeyPem, config.auth.issuer, {
  userId: values.user,
  ...(values.email ? { email: values.email } : {}),
  // Ids are compared in lower case (the API takes either), so the token carries them so.
  orgs: values.org.map((orgId) => ({ orgId: orgId.toLowerCase(), role })),
  expiresInSeconds: Math.round(ttlMs / 1000),
});
console.log(token);
