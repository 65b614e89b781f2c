// The one way generated/ changes: every file there is rebuilt from openapi.yaml and contracts/.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateOpenApi } from './generate-openapi.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function generateProto(): void {
  // buf.gen.yaml uses the locally installed ts-proto plugin (clean: true), so no remote plugin is fetched.
  execFileSync('npx', ['--no-install', 'buf', 'generate'], { cwd: root, stdio: 'inherit' });
}

function generateGoProto(): void {
  // agents/go/buf.gen.yaml uses protoc-gen-go and protoc-gen-go-grpc at pinned versions, built once
  // through the Go module proxy into a cache folder; the script prints that folder, put first on PATH.
  const pluginDir = execFileSync('bash', [path.join(root, 'agents/go/scripts/protoc-plugins.sh')], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' }).trim();
  const env = { ...process.env, PATH: `${pluginDir}${path.delimiter}${process.env.PATH ?? ''}` };
  execFileSync('npx', ['--no-install', 'buf', 'generate', '--template', 'agents/go/buf.gen.yaml'], { cwd: root, stdio: 'inherit', env });
}

generateProto();
generateGoProto();
await generateOpenApi(root);
console.log('generated/ is up to date with openapi.yaml and contracts/');
