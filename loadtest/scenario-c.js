// Scenario C: the mixed baseline (log in once, browse, read, post) while the database is degraded.
// playbooks/loadtest.yml throttles the PostgreSQL container (docker update --cpus
// loadtest_degraded_cpus) for exactly this run and puts the limit back afterwards, even when k6
// fails. The thresholds are what users could still live with on a degraded database: a few
// errors at most and answers within seconds, not tens of seconds.
// Constant VUS for DURATION. Run by playbooks/loadtest.yml (loadtest_scenarios: [scenario-c]).
import { constantScenario, thresholds, summaryTrendStats, ensureSession, browseAndPost, think } from './lib.js';

export const options = {
  scenarios: { 'scenario-c': constantScenario() },
  thresholds: thresholds({ maxErrorRate: 0.05, p95Ms: 3000, loginP95Ms: 5000 }),
  summaryTrendStats,
};

export default function () {
  const s = ensureSession();
  if (s) {
    browseAndPost(s);
    think(1);
  }
}
