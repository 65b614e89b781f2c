import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { ConfigError, loadConfig, settingNames } from './config.js';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('configuration from the environment', () => {
  it('runs on embedded defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ role: 'all', httpPort: 8080, grpcPort: 50051, database: { kind: 'pglite' }, temporal: { address: undefined, taskQueue: 'jobs' }, auth: { mode: 'dev' } });
    expect(config.dataDir).toMatch(/\.data$/);
  });

  it('uses a PostgreSQL server and a Temporal cluster when they are named', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://u:p@db:5432/jobs', TEMPORAL_ADDRESS: 'temporal:7233' });
    expect(config.database).toEqual({ kind: 'postgres', url: 'postgres://u:p@db:5432/jobs', poolSize: 10 });
    expect(config.temporal.address).toBe('temporal:7233');
  });

  it('reports every bad value on a line of its own, naming the variable and the value', () => {
    expect(problems({ PORT: 'eighty', GRPC_PORT: '70000', JOB_RUN_TIMEOUT: 'soon', ROLE: 'boss', DATABASE_URL: 'mysql://x' })).toEqual([
      'ROLE: must be one of all, api, gateway, worker (got "boss")',
      'PORT: must be a port number (got "eighty")',
      'GRPC_PORT: must be between 0 and 65535 (got "70000")',
      'DATABASE_URL: must be a postgres:// or postgresql:// URL (got "mysql://x")',
      'JOB_RUN_TIMEOUT: must be a positive duration such as 30s, 15m or 2h (got "soon")',
    ]);
  });

  it('reads durations written the way people write them', () => {
    const config = loadConfig({ JOB_QUEUE_TIMEOUT: '90m', AGENT_SILENCE_TIMEOUT: '45s', JOB_START_TIMEOUT: '1500' });
    expect(config.jobs).toMatchObject({ queueTimeoutMs: 90 * 60_000, agentSilenceTimeoutMs: 45_000, startTimeoutMs: 1500 });
  });

  it('refuses dev auth in production', () => {
    expect(problems({ NODE_ENV: 'production' })).toEqual([
      'PROPELAUTH_AUTH_URL: is required when NODE_ENV=production: dev auth (local signing keys) is refused in production',
    ]);
  });

  it('requires the PropelAuth API key beside the auth URL', () => {
    expect(problems({ NODE_ENV: 'production', PROPELAUTH_AUTH_URL: 'https://auth.example.com' })).toEqual(['PROPELAUTH_API_KEY: is required when PROPELAUTH_AUTH_URL is set']);
    const config = loadConfig({ NODE_ENV: 'production', PROPELAUTH_AUTH_URL: 'https://auth.example.com', PROPELAUTH_API_KEY: 'k' });
    expect(config.auth).toMatchObject({ mode: 'propelauth', authUrl: 'https://auth.example.com' });
  });

  it('requires shared infrastructure when roles run in separate processes', () => {
    expect(problems({ ROLE: 'api' })).toEqual([
      'DATABASE_URL: is required when ROLE=api: split roles share one PostgreSQL server',
      'TEMPORAL_ADDRESS: is required when ROLE=api: split roles share one Temporal cluster',
    ]);
  });

  it('traces only when an OTLP endpoint is named, sending to the traces path of a base endpoint', () => {
    expect(loadConfig({}).tracing).toBeUndefined();
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing).toEqual({ endpoint: 'http://collector:4318/v1/traces', serviceName: 'agent-jobs' });
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://tempo:4318/v1/traces', OTEL_SERVICE_NAME: 'jobs-eu' }).tracing).toEqual({
      endpoint: 'http://tempo:4318/v1/traces',
      serviceName: 'jobs-eu',
    });
    expect(problems({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector' })).toEqual(['OTEL_EXPORTER_OTLP_ENDPOINT: must be a URL such as http://collector:4318 (got "collector")']);
  });

  it('has every variable it reads in the README\'s Configuration table', () => {
    const readme = fs.readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const table = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1));
    expect(settingNames.filter((name) => !table.includes(`\`${name}\``))).toEqual([]);
  });
});
