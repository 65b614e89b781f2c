// Prints one plain closing line, `N passed, N failed, N skipped`, after vitest's own summary, so
// tools that read test output (CI among them) need not parse vitest's formatting.
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') counts.passed++;
        else if (state === 'failed') counts.failed++;
        else counts.skipped++;
      }
      if (module.state() === 'failed' && module.children.size === 0) counts.failed++;
    }
    process.stdout.write(`\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`);
    // The driver matrix depends on the machine: say what it left out rather than pass quietly.
    if (!process.env.DATABASE_URL) {
      process.stdout.write('PostgreSQL cases were skipped: DATABASE_URL is unset, so the integration suites ran on PGlite only (CI sets it).\n');
    }
    if (!process.env.TEMPORAL_TEST_SERVER_PATH) {
      process.stdout.write(
        'Time-skipping cases were skipped (job deadlines at full length): TEMPORAL_TEST_SERVER_PATH is unset; export TEMPORAL_TEST_SERVER_PATH=$(scripts/install-temporal-test-server.sh) (CI does).\n',
      );
    }
  }
}
