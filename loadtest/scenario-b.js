// Scenario B: each VU logs in once (first iteration), then posts messages into the channels it is
// a member of (the load-test team's town-square and off-topic), with a short think time.
// Constant VUS for DURATION. Run by playbooks/loadtest.yml (loadtest_scenarios: [scenario-b]).
import { constantScenario, thresholds, summaryTrendStats, ensureSession, api, json, pick, think, TEAM_ID } from './lib.js';

export const options = {
  scenarios: { 'scenario-b': constantScenario() },
  thresholds: thresholds({ maxErrorRate: 0.01, p95Ms: 1000, loginP95Ms: 3000 }),
  summaryTrendStats,
};

// The channels this VU may post in, read once after login.
let channels = null;

export default function () {
  const s = ensureSession();
  if (!s) return;
  if (!channels) {
    const res = api('GET', `/api/v4/users/me/teams/${TEAM_ID}/channels`, null, s.token, 'my_channels');
    const ids = (json(res) || []).map((c) => c.id).filter((id) => typeof id === 'string');
    if (!ids.length) return;
    channels = ids;
  }
  api('POST', '/api/v4/posts', { channel_id: pick(channels), message: `scenario b ${s.username} ${__ITER}` }, s.token,
    'create_post');
  think(0.5);
}
