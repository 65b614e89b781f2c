// Reading /metrics as a scraper does: not part of openapi.yaml (like /docs), so not through the
// contract-checked fetch.
import type { TestSystem } from './system.js';

/** The system's /metrics: its API's, or, in a process without the API, its metrics endpoint's. */
export async function scrapeMetrics(t: TestSystem): Promise<string> {
  const response = await fetch(`${t.system.metricsUrl ?? t.url}/metrics`);
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}

/** The value of one sample of the exposition text (`name{labels} value`), 0 when absent. */
export function metricSample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[3]);
  }
  return 0;
}

/** One unlabelled metric's value now. */
export async function metric(t: TestSystem, name: string): Promise<number> {
  return metricSample(await scrapeMetrics(t), name);
}
