// `npm run build` (after tsc): puts beside the compiled server in dist/ what it reads at run time
// from beside its sources (the contract, the migrations, the job page's files) and the Temporal
// workflow bundle, precompiled so that a built worker starts without bundling (about 4 s saved at
// every start). Then `node dist/src/main.js` (`npm start`) runs without tsx or TypeScript.
import { bundleWorkflowCode } from '@temporalio/worker';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = path.join(root, 'dist');

async function copy(from: string, to: string, filter?: (name: string) => boolean): Promise<void> {
  await fs.cp(path.join(root, from), path.join(dist, to), { recursive: true, filter: (source) => !filter || filter(path.basename(source)) || !path.extname(source) });
}

await copy('openapi.yaml', 'openapi.yaml');
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

// npm links bins executable on install; a build used in place must be executable too.
await fs.chmod(path.join(root, 'agents/typescript/dist/src/main.js'), 0o755).catch(() => undefined);
await fs.chmod(path.join(dist, 'src/main.js'), 0o755);
console.log(`built ${path.relative(root, dist)}/: server, contract, migrations, job page, workflow bundles (${(code.length / 1024).toFixed(0)} KiB, traced ${(traced.code.length / 1024).toFixed(0)} KiB)`);
