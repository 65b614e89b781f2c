// Local signing keys for dev auth: the server verifies with the public key exactly as it would
// PropelAuth's, and `npm run token` signs with the private key. Kept in DATA_DIR so tokens outlive
// restarts; never used when NODE_ENV=production (config refuses it).
import { generateKeyPair, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

export interface DevKeys {
  privateKeyPem: string;
  publicKeyPem: string;
}

const pemOptions = { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } } as const;

export function loadOrCreateDevKeys(keyDir: string): DevKeys {
  const privatePath = path.join(keyDir, 'private.pem');
  const publicPath = path.join(keyDir, 'public.pem');
  if (fs.existsSync(privatePath) && fs.existsSync(publicPath)) {
    return { privateKeyPem: fs.readFileSync(privatePath, 'utf8'), publicKeyPem: fs.readFileSync(publicPath, 'utf8') };
  }
  keep(keyDir, generateKeyPairSync('rsa', pemOptions));
  return loadOrCreateDevKeys(keyDir);
}

/**
 * Makes the key pair if there is none, off the main thread: a start does it beside its other work
 * instead of stopping everything for the RSA key generation (a few hundred ms on a busy machine).
 */
export async function createDevKeysIfMissing(keyDir: string): Promise<void> {
  if (fs.existsSync(path.join(keyDir, 'private.pem')) && fs.existsSync(path.join(keyDir, 'public.pem'))) return;
  keep(keyDir, await promisify(generateKeyPair)('rsa', pemOptions));
}

function keep(keyDir: string, { privateKey, publicKey }: { privateKey: string; publicKey: string }): void {
  const privatePath = path.join(keyDir, 'private.pem');
  const publicPath = path.join(keyDir, 'public.pem');
  fs.mkdirSync(keyDir, { recursive: true, mode: 0o700 });
  // Written to temporary names then renamed, so two processes starting at once agree on one pair.
  const suffix = `.${process.pid}.tmp`;
  fs.writeFileSync(privatePath + suffix, privateKey, { mode: 0o600 });
  fs.writeFileSync(publicPath + suffix, publicKey);
  if (!fs.existsSync(privatePath)) {
    fs.renameSync(publicPath + suffix, publicPath);
    fs.renameSync(privatePath + suffix, privatePath);
  } else {
    fs.rmSync(privatePath + suffix);
    fs.rmSync(publicPath + suffix);
  }
}
