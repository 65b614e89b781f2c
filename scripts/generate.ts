// The one way generated/ changes: every file there is rebuilt from openapi.yaml and contracts/.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { generateOpenApi } from './generate-openapi.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function generateProto(): void {
  // buf.gen.yaml uses the locally installed ts-proto plugin (clean: true), so no remote plugin is fetched.
  execFileSync('npx', ['--no-install', 'buf', 'generate'], { cwd: root, stdio: 'inherit' });
}

generateProto();
await generateOpenApi(root);
console.log('generated/ is up to date with openapi.yaml and contracts/');
