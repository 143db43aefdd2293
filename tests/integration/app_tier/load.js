// Bounded, GET-heavy load on the app tier through Nginx (loopback only). Run by test_app_tier.py:
//   k6 run -e BASE_URL=... -e TOKEN=... -e CHANNEL_ID=... -e VUS=20 -e DURATION=30s
//          -e WRITE_SHARE=0.1 [-e EXECUTOR=external] --summary-export out.json load.js
// Reads carry the tag kind=read, writes kind=write, so the checks can tell which failed.
// EXECUTOR=external: the test ends it early with `k6 pause` (no iteration in flight) and SIGINT,
// so that no request is cut off by the interruption; DURATION still bounds it.
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE = __ENV.BASE_URL;
const PARAMS = { headers: { Authorization: `Bearer ${__ENV.TOKEN}`, 'Content-Type': 'application/json' } };
const WRITE_SHARE = parseFloat(__ENV.WRITE_SHARE || '0.1');
const VUS = parseInt(__ENV.VUS || '20', 10);

export const options = {
  scenarios: {
    steady: __ENV.EXECUTOR === 'external'
      ? { executor: 'externally-controlled', vus: VUS, maxVUs: VUS, duration: __ENV.DURATION || '30s' }
      : { executor: 'constant-vus', vus: VUS, duration: __ENV.DURATION || '30s' },
  },
  // Stop by itself: nothing runs longer than the duration plus this grace.
  gracefulStop: '5s',
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
  thresholds: {
    'http_req_failed{kind:read}': ['rate==0'],
    'checks{kind:read}': ['rate==1'],
    // Always true: only there so that the summary reports writes on their own.
    'http_req_failed{kind:write}': ['rate>=0'],
  },
};

export default function () {
  const r = Math.random();
  if (r < WRITE_SHARE) {
    const res = http.post(`${BASE}/api/v4/posts`, JSON.stringify({ channel_id: __ENV.CHANNEL_ID, message: `load ${__VU}/${__ITER}` }),
      Object.assign({ tags: { kind: 'write', name: 'create_post' } }, PARAMS));
    check(res, { 'post created': (x) => x.status === 201 }, { kind: 'write' });
  } else if (r < 0.55) {
    const res = http.get(`${BASE}/api/v4/channels/${__ENV.CHANNEL_ID}/posts?page=0&per_page=30`,
      Object.assign({ tags: { kind: 'read', name: 'channel_posts' } }, PARAMS));
    check(res, { 'posts read': (x) => x.status === 200 }, { kind: 'read' });
  } else if (r < 0.8) {
    const res = http.get(`${BASE}/api/v4/users/me`, Object.assign({ tags: { kind: 'read', name: 'me' } }, PARAMS));
    check(res, { 'me read': (x) => x.status === 200 }, { kind: 'read' });
  } else {
    const res = http.get(`${BASE}/api/v4/system/ping`, { tags: { kind: 'read', name: 'ping' } });
    check(res, { 'ping ok': (x) => x.status === 200 }, { kind: 'read' });
  }
  sleep(0.1);
}
