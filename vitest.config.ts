import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'agents/typescript/src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    reporters: ['default', './test/support/contract-coverage-reporter.ts', './test/support/summary-reporter.ts'],
    // Integration suites start real servers; two cores run two files at a time comfortably.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    // expect.poll waits for something the system does in its own time: its 1 s default is a timing
    // a busy machine eats. Polls end as soon as they hold, so a generous bound costs nothing.
    expect: { poll: { timeout: 20_000, interval: 50 } },
  },
});
