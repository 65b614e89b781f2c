import { describe, expect, it } from 'vitest';
import { parseCli, parseServer, UsageError } from './cli-options.js';

const required = ['--server', 'localhost:50051', '--token', 't0k', '--exec', 'run-tool'];

describe('agent command line', () => {
  it('fills in defaults under the home directory', () => {
    const result = parseCli(required, {}, '/home/ada');
    expect(result).toMatchObject({ kind: 'run', options: { capacity: 1, labels: [], stateDir: '/home/ada/.agent-jobs', workDir: '/home/ada/.agent-jobs/work', heartbeatFallbackMs: 10_000 } });
  });

  it('takes the server and token from the environment when the flags are absent', () => {
    const result = parseCli(['--exec', 'run-tool', '--labels', ' linux, gpu,,linux', '--heartbeat', '500ms'], { AGENT_SERVER: 'https://grpc.example.test', AGENT_TOKEN: 'env-token' }, '/home/ada');
    expect(result).toMatchObject({ kind: 'run', options: { server: { address: 'grpc.example.test:443', tls: true }, token: 'env-token', labels: ['linux', 'gpu'], heartbeatFallbackMs: 500 } });
  });

  it('reads a bare duration as milliseconds, as the server does', () => {
    expect(parseCli([...required, '--heartbeat', '750'], {}, '/home/ada')).toMatchObject({ options: { heartbeatFallbackMs: 750 } });
    expect(parseCli([...required, '--heartbeat', '2s'], {}, '/home/ada')).toMatchObject({ options: { heartbeatFallbackMs: 2000 } });
  });

  it('reads plaintext and TLS addresses, IPv6 included', () => {
    expect(parseServer('127.0.0.1:50051')).toEqual({ address: '127.0.0.1:50051', tls: false });
    expect(parseServer('http://agents.local:8080')).toEqual({ address: 'agents.local:8080', tls: false });
    expect(parseServer('https://[::1]:8443/')).toEqual({ address: '[::1]:8443', tls: true });
    expect(() => parseServer('agents.local')).toThrow(UsageError);
  });

  it('refuses what it cannot use, naming the flag', () => {
    expect(() => parseCli(['--server', 'h:1', '--exec', 'x'], {})).toThrow(/--token/);
    expect(() => parseCli([...required, '--capacity', '0'], {})).toThrow(/--capacity/);
    expect(() => parseCli([...required, '--heartbeat', 'soon'], {})).toThrow(/--heartbeat/);
    expect(() => parseCli([...required, '--bogus'], {})).toThrow(UsageError);
    expect(() => parseCli([...required, 'stray'], {})).toThrow(/unexpected argument/);
  });

  it('makes changes on job-named branches by the default author, pushed, unless told otherwise', () => {
    expect(parseCli(required, {}, '/home/ada')).toMatchObject({ options: { change: { branchPrefix: 'agent-jobs/', author: { name: 'agent-jobs', email: 'agent-jobs@localhost' }, push: true } } });
    const told = parseCli([...required, '--branch-prefix', 'bots/ai-', '--git-author', 'Robo Coder <robo@example.test>', '--no-push'], {}, '/home/ada');
    expect(told).toMatchObject({ options: { change: { branchPrefix: 'bots/ai-', author: { name: 'Robo Coder', email: 'robo@example.test' }, push: false } } });
    const fromEnv = parseCli(required, { AGENT_BRANCH_PREFIX: 'x/', AGENT_GIT_AUTHOR: 'A <a@b>', AGENT_NO_PUSH: 'true' }, '/home/ada');
    expect(fromEnv).toMatchObject({ options: { change: { branchPrefix: 'x/', author: { name: 'A', email: 'a@b' }, push: false } } });
  });

  it('traces only when given an OTLP endpoint, by flag or by OpenTelemetry\'s own variables', () => {
    const tracing = (argv: string[], env: NodeJS.ProcessEnv) => {
      const result = parseCli([...required, ...argv], env, '/home/ada');
      return result.kind === 'run' ? result.options.tracing : undefined;
    };
    expect(tracing([], {})).toBeUndefined();
    expect(tracing(['--otlp-endpoint', 'http://collector:4318/'], {})).toEqual({ endpoint: 'http://collector:4318/v1/traces', serviceName: 'agent-jobs-agent' });
    expect(tracing([], { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SERVICE_NAME: 'laptop-agent' })).toEqual({ endpoint: 'http://collector:4318/v1/traces', serviceName: 'laptop-agent' });
    expect(tracing([], { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://tempo.example.test/otlp/v1/traces' })).toMatchObject({ endpoint: 'https://tempo.example.test/otlp/v1/traces' });
    expect(() => parseCli([...required, '--otlp-endpoint', 'collector:4318'], {}, '/home/ada')).toThrow(/--otlp-endpoint .* must be an http:\/\/ or https:\/\/ URL, got "collector:4318"/);
  });

  it('refuses a branch prefix git would not take, and an author without an email', () => {
    for (const prefix of ['../x', '/x', 'a..b', 'a b', 'a//b', 'x.lock/', '-x', 'a/.b']) expect(() => parseCli([...required, '--branch-prefix', prefix], {}), prefix).toThrow(/--branch-prefix/);
    for (const author of ['Robo', '<robo@x>', 'Robo <>', 'Robo <a b>']) expect(() => parseCli([...required, '--git-author', author], {}), author).toThrow(/--git-author/);
  });
});
