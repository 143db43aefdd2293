// Mixed baseline: each VU logs in once (first iteration), then browses its teams and channels,
// reads the last posts of a channel and posts a message, with a think time between iterations.
// VUs ramp up to VUS over the first quarter of DURATION, hold, and ramp down at the end.
// Run by playbooks/loadtest.yml (loadtest_scenarios: [benchmark]) and tools/benchmark.py.
import { rampingScenario, thresholds, summaryTrendStats, ensureSession, browseAndPost, think } from './lib.js';

export const options = {
  scenarios: { benchmark: rampingScenario() },
  thresholds: thresholds({ maxErrorRate: 0.01, p95Ms: 1000, loginP95Ms: 3000 }),
  summaryTrendStats,
};

export default function () {
  const s = ensureSession();
  if (s) {
    browseAndPost(s);
    think(1);
  }
}
