// Scenario A: each VU logs in once (first iteration), then creates channels in the load-test team
// (an insert into channels and channelmembers each), with a short think time.
// Constant VUS for DURATION. Run by playbooks/loadtest.yml (loadtest_scenarios: [scenario-a]).
import { constantScenario, thresholds, summaryTrendStats, ensureSession, api, think, uniqueName, TEAM_ID } from './lib.js';

export const options = {
  scenarios: { 'scenario-a': constantScenario() },
  thresholds: thresholds({ maxErrorRate: 0.01, p95Ms: 1000, loginP95Ms: 3000 }),
  summaryTrendStats,
};

export default function () {
  const s = ensureSession();
  if (!s) return;
  const name = uniqueName('lt-a');
  api('POST', '/api/v4/channels', { team_id: TEAM_ID, name, display_name: `Load test ${name}`, type: 'O' }, s.token,
    'create_channel');
  think(0.5);
}
