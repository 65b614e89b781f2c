// The agent's own diagnostics, one line each on stderr. Job output never goes here: it goes to the
// server through the log outbox.

type Level = 'debug' | 'info' | 'warn' | 'error';
type Fields = Record<string, string | number | boolean | undefined>;

const verbose = process.env.AGENT_DEBUG === '1';

function write(level: Level, message: string, fields: Fields): void {
  if (level === 'debug' && !verbose) return;
  const rendered = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${typeof value === 'string' && /[\s"=]/.test(value) ? JSON.stringify(value) : String(value)}`)
    .join(' ');
  process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${message}${rendered ? ` ${rendered}` : ''}\n`);
}

export const agentLog = {
  debug: (message: string, fields: Fields = {}): void => write('debug', message, fields),
  info: (message: string, fields: Fields = {}): void => write('info', message, fields),
  warn: (message: string, fields: Fields = {}): void => write('warn', message, fields),
  error: (message: string, fields: Fields = {}): void => write('error', message, fields),
};
