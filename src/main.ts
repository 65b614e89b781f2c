// `npm run dev` / `npm start`: loads the configuration (refusing bad values before anything starts),
// runs this process's roles, and shuts them down in order on SIGINT/SIGTERM.
import { pino } from 'pino';
import { ConfigError, loadConfig, type Config } from './config.js';
import { startSystem } from './system.js';

let config: Config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}

const logger = pino({ level: config.logLevel, base: { replica: config.replicaId } });
logger.info({ role: config.role, dataDir: config.dataDir, auth: config.auth.mode }, 'starting');

const system = await startSystem(config, logger).catch((err: unknown) => {
  logger.fatal({ err }, 'failed to start');
  process.exit(1);
});

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    system.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
