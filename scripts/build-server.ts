// `npm run build` (after tsc): puts beside the compiled server in dist/ what it reads at run time
// from beside its sources (the contract, the migrations, the job page's files), the Temporal
// workflow bundle, precompiled so that a built worker starts without bundling (about 4 s saved at
// every start), and an embedded database already created and migrated (most of a first start). Then `node dist/src/main.js` (`npm start`) runs without tsx or TypeScript.
import { PGlite } from '@electric-sql/pglite';
import { bundleWorkflowCode } from '@temporalio/worker';
import { drizzle } from 'drizzle-orm/pglite';
import { migrate } from 'drizzle-orm/pglite/migrator';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = path.join(root, 'dist');

async function copy(from: string, to: string, filter?: (name: string) => boolean): Promise<void> {
  await fs.cp(path.join(root, from), path.join(dist, to), { recursive: true, filter: (source) => !filter || filter(path.basename(source)) || !path.extname(source) });
}

await copy('openapi.yaml', 'openapi.yaml');
// The built server reads the contract as JSON (src/http/specification.ts): a YAML parse less at every start.
await fs.writeFile(path.join(dist, 'openapi.json'), JSON.stringify(parse(await fs.readFile(path.join(root, 'openapi.yaml'), 'utf8'))));
await copy('src/db/migrations', 'src/db/migrations');
await copy('src/http/log-viewer', 'src/http/log-viewer', (name) => /\.(html|css|js)$/.test(name) && !name.endsWith('.plugin.js'));

const workflowsPath = path.join(dist, 'src/temporal/workflows/index.js');
const logger = { trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error, log() {} };
const { code } = await bundleWorkflowCode({ workflowsPath, logger });
await fs.writeFile(path.join(dist, 'workflow-bundle.js'), code);
// A tracing worker (OTEL_EXPORTER_OTLP_*) runs the workflows with Temporal's tracing interceptors, which
// live in the bundle: a second one has them, so turning traces on costs the untraced nothing.
const traced = await bundleWorkflowCode({ workflowsPath, workflowInterceptorModules: [path.join(dist, 'src/temporal/workflows/tracing.interceptors.js')], logger });
await fs.writeFile(path.join(dist, 'workflow-bundle-traced.js'), traced.code);

// The embedded database a first start unpacks (src/db/client.ts): PGlite's initdb and every migration
// of this build, done once here instead of at every operator's first start.
const template = await PGlite.create();
await migrate(drizzle(template), { migrationsFolder: path.join(dist, 'src/db/migrations') });
const dump = await template.dumpDataDir('gzip');
await template.close();
await fs.writeFile(path.join(dist, 'pglite-template.tar.gz'), Buffer.from(await dump.arrayBuffer()));

// npm links bins executable on install; a build used in place must be executable too.
await fs.chmod(path.join(root, 'agents/typescript/dist/src/main.js'), 0o755).catch(() => undefined);
await fs.chmod(path.join(dist, 'src/main.js'), 0o755);
console.log(
  `built ${path.relative(root, dist)}/: server, contract, migrations, job page, workflow bundles (${(code.length / 1024).toFixed(0)} KiB, traced ${(traced.code.length / 1024).toFixed(0)} KiB), database template (${(dump.size / 1024).toFixed(0)} KiB)`,
);
