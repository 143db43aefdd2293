// Shared code of the k6 scenarios (benchmark.js, scenario-a.js, scenario-b.js, scenario-c.js).
//
// Parameters (k6 -e NAME=value):
//   BASE_URL        Mattermost as users reach it (through Nginx), e.g. http://127.0.0.1:18090
//   ACCOUNTS_FILE   JSON written by playbooks/loadtest.yml (absolute path):
//                   {"team_id": "...", "channel_ids": ["..."], "users": [{"username", "password", "id"}]}
//                   one account per VU: VU n uses users[n-1], so there must be at least VUS users.
//   VUS             virtual users (default 5)
//   DURATION        test length, k6 syntax (default 30s)
//   THINK_SECONDS   pause between iterations of one VU (default per scenario)
//   MAX_ERROR_RATE  threshold on the share of failed requests (default per scenario)
//   P95_MS          threshold on the 95th percentile of request time in ms (default per scenario)
//   LOGIN_P95_MS    threshold on the 95th percentile of the login request (default per scenario)
//
// Every request is counted: http_req_failed (200 and 201 are the expected statuses, so a login
// answered 200 or 201 both count as success) and the `errors` Rate, to which every request adds
// true (failed) or false (succeeded). Each VU logs in once, on its first iteration, and keeps its
// token; a failed login is retried on the next iteration after a pause.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Rate } from 'k6/metrics';
import { SharedArray } from 'k6/data';

http.setResponseCallback(http.expectedStatuses(200, 201));

export const errors = new Rate('errors');

function envNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name}=${raw} is not a number`);
  return value;
}

export const BASE_URL = (__ENV.BASE_URL || '').replace(/\/+$/, '');
if (!/^https?:\/\/[^/]+/.test(BASE_URL)) throw new Error(`BASE_URL=${__ENV.BASE_URL} is not an http(s) URL`);
export const VUS = envNumber('VUS', 5);
if (!Number.isInteger(VUS) || VUS < 1) throw new Error(`VUS=${__ENV.VUS}: use a whole number of 1 or more`);
export const DURATION = __ENV.DURATION || '30s';

// Seconds in a k6 duration such as 90s, 1m30s, 500ms.
export function seconds(duration) {
  const text = String(duration);
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) {
    throw new Error(`DURATION=${duration} is not a k6 duration (e.g. 30s, 2m, 1m30s)`);
  }
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 };
  let sum = 0;
  for (const [, num, , u] of text.matchAll(/(\d+(\.\d+)?)(ms|s|m|h)/g)) sum += Number(num) * unit[u];
  return sum;
}
if (seconds(DURATION) <= 0) throw new Error(`DURATION=${DURATION} must be longer than 0`);

// The seeded accounts, parsed once and shared by all VUs.
const ACCOUNTS = new SharedArray('accounts', () => {
  if (!__ENV.ACCOUNTS_FILE) throw new Error('ACCOUNTS_FILE is not set (playbooks/loadtest.yml writes it)');
  const data = JSON.parse(open(__ENV.ACCOUNTS_FILE));
  if (!data.team_id || !Array.isArray(data.users) || !Array.isArray(data.channel_ids) || data.channel_ids.length === 0) {
    throw new Error(`${__ENV.ACCOUNTS_FILE}: needs team_id, channel_ids and users`);
  }
  return [data];
})[0];
export const TEAM_ID = ACCOUNTS.team_id;
export const CHANNEL_IDS = ACCOUNTS.channel_ids;
if (ACCOUNTS.users.length < VUS) {
  throw new Error(`${ACCOUNTS.users.length} seeded accounts for ${VUS} VUs: every VU needs its own account`);
}

// Thresholds every scenario has: error rate (both ways of counting) and the 95th percentiles.
// k6 exits with 99 when one is crossed.
export function thresholds(defaults) {
  const maxErrorRate = envNumber('MAX_ERROR_RATE', defaults.maxErrorRate);
  const p95 = envNumber('P95_MS', defaults.p95Ms);
  const loginP95 = envNumber('LOGIN_P95_MS', defaults.loginP95Ms);
  return {
    http_req_failed: [`rate<${maxErrorRate}`],
    errors: [`rate<${maxErrorRate}`],
    http_req_duration: [`p(95)<${p95}`],
    'http_req_duration{name:login}': [`p(95)<${loginP95}`],
    // A run that sent nothing is not a pass.
    http_reqs: ['count>0'],
  };
}

export const summaryTrendStats = ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'];

// A constant number of VUs for DURATION.
export function constantScenario() {
  return { executor: 'constant-vus', vus: VUS, duration: DURATION, gracefulStop: '10s' };
}

// Ramp up to VUS over the first quarter of DURATION, hold, then ramp down over the last tenth.
export function rampingScenario() {
  const total = seconds(DURATION);
  const up = Math.max(1, Math.round(total * 0.25));
  const down = Math.max(1, Math.round(total * 0.1));
  const hold = Math.max(1, Math.round(total - up - down));
  return {
    executor: 'ramping-vus',
    startVUs: 1,
    stages: [
      { duration: `${up}s`, target: VUS },
      { duration: `${hold}s`, target: VUS },
      { duration: `${down}s`, target: 0 },
    ],
    gracefulRampDown: '10s',
    gracefulStop: '10s',
  };
}

// One API call: JSON in and out, tagged with a name (ids stay out of the metric names), counted
// in `errors` whatever the outcome.
export function api(method, path, body, token, name) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = http.request(method, `${BASE_URL}${path}`, body === null ? null : JSON.stringify(body),
    { headers, tags: { name } });
  const ok = res.status === 200 || res.status === 201;
  errors.add(!ok, { name });
  check(res, { [`${name}: 200/201`]: () => ok });
  return res;
}

export function json(res) {
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

// This VU's own account.
export function account() {
  return ACCOUNTS.users[(__VU - 1) % ACCOUNTS.users.length];
}

// The session of this VU: logged in once, on the first iteration (again only after a failure).
let session = null;
export function ensureSession() {
  if (session) return session;
  const user = account();
  const res = api('POST', '/api/v4/users/login', { login_id: user.username, password: user.password }, null, 'login');
  const token = res.headers.Token || res.headers.token;
  if ((res.status === 200 || res.status === 201) && token) {
    const me = json(res);
    session = { token, userId: (me && me.id) || user.id, username: user.username };
    return session;
  }
  sleep(1); // back off before the next attempt
  return null;
}

export function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

export function think(defaultSeconds) {
  const base = envNumber('THINK_SECONDS', defaultSeconds);
  if (base > 0) sleep(base * (0.5 + Math.random())); // +-50 %, so that VUs do not march in step
}

export function uniqueName(prefix) {
  return `${prefix}-${__VU}-${__ITER}-${Math.random().toString(36).slice(2, 8)}`.toLowerCase().slice(0, 60);
}

// A browsing user: my teams, my channels in the load-test team, the last posts of one channel,
// then a post into one of my channels.
export function browseAndPost(s) {
  api('GET', '/api/v4/users/me/teams', null, s.token, 'my_teams');
  const res = api('GET', `/api/v4/users/me/teams/${TEAM_ID}/channels`, null, s.token, 'my_channels');
  const mine = (json(res) || []).map((c) => c.id).filter((id) => typeof id === 'string');
  api('GET', `/api/v4/channels/${pick(CHANNEL_IDS)}/posts?page=0&per_page=30`, null, s.token, 'channel_posts');
  if (mine.length) { // (the failed request above is already counted)
    api('POST', '/api/v4/posts', { channel_id: pick(mine), message: `load test ${s.username} ${__ITER}` }, s.token,
      'create_post');
  }
}
