// The job command of the logs benchmark, run by the reference agent: prints numbered lines on
// stdout, each carrying the moment it was printed (timedText), either at a fixed rate for a fixed
// time or as fast as the pipe takes them. Stdout to a pipe is synchronous on Linux, so when the
// agent stops reading (its outbox is full) this process blocks, as any real command would.
//
//   log-printer.ts paced <lines/s> <warm-up s> <measured s> <text bytes>
//   log-printer.ts flood <lines> <text bytes>
import { lineText } from './log-clients.js';
import { epochMs, timedText } from './log-viewer.js';

const [mode, ...args] = process.argv.slice(2);
const numbers = args.map(Number);

if (mode === 'paced') {
  const [rate = 0, warmupS = 0, measuredS = 0, bytes = 80] = numbers;
  const total = Math.round(rate * (warmupS + measuredS));
  const start = epochMs();
  let printed = 0;
  const tick = () => {
    const now = epochMs();
    const elapsedS = (now - start) / 1000;
    const due = Math.min(total, Math.floor(elapsedS * rate)) - printed;
    if (due > 0) {
      // Lines due together are printed together, at this moment, as one write.
      const measured = elapsedS >= warmupS;
      let chunk = '';
      for (let i = 0; i < due; i++) chunk += `${timedText(now, measured, lineText(++printed, bytes))}\n`;
      process.stdout.write(chunk);
    }
    // A 1 ms timer rather than a busy loop: the machine has other work (the agent, the server).
    if (printed < total) setTimeout(tick, 1);
  };
  tick();
} else if (mode === 'flood') {
  const [lines = 0, bytes = 80] = numbers;
  const CHUNK = 1000;
  for (let from = 1; from <= lines; from += CHUNK) {
    let chunk = '';
    const now = epochMs();
    for (let n = from; n < Math.min(lines + 1, from + CHUNK); n++) chunk += `${timedText(now, false, lineText(n, bytes))}\n`;
    process.stdout.write(chunk);
  }
} else {
  process.stderr.write('usage: log-printer.ts paced <lines/s> <warm-up s> <measured s> <bytes> | flood <lines> <bytes>\n');
  process.exit(2);
}
