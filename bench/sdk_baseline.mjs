// The approach okta-phone-migrate replaces: a plain script that walks the
// CSV one user at a time through Okta's official Node SDK (8.x) — list the
// factors, delete the sms one, enroll the new number with updatePhone=true.
// Rate limits are left to the SDK's own 429 handling (its defaults).
//
// Usage: node sdk_baseline.mjs --org-url http://127.0.0.1:PORT --input rows.csv
//        [--max-seconds N]   (token in OKTA_CLIENT_TOKEN)
// Prints one JSON line with counts and the wall time.

import { readFileSync } from 'node:fs';
import okta from '@okta/okta-sdk-nodejs';

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const orgUrl = arg('--org-url');
const input = arg('--input');
const maxSeconds = Number(arg('--max-seconds', '900'));
const token = process.env.OKTA_CLIENT_TOKEN;
if (!orgUrl || !input || !token) {
  console.error('usage: --org-url URL --input CSV, token in OKTA_CLIENT_TOKEN');
  process.exit(2);
}
// The benchmark talks to the local simulator only.
if (!/^http:\/\/127\.0\.0\.1:\d+\/?$/.test(orgUrl)) {
  console.error(`refusing org URL ${orgUrl}: only http://127.0.0.1:PORT`);
  process.exit(2);
}

// The bench CSV is plain: a header, then user_id,new_phone with no quoting.
const lines = readFileSync(input, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
const header = lines[0].split(',').map((h) => h.trim());
const userCol = header.indexOf('user_id');
const phoneCol = header.indexOf('new_phone');
if (userCol < 0 || phoneCol < 0) {
  console.error('the CSV needs user_id and new_phone columns');
  process.exit(2);
}
const rows = lines.slice(1).map((l) => {
  const cells = l.split(',');
  return { userId: cells[userCol].trim(), phone: cells[phoneCol].trim() };
});

const client = new okta.Client({ orgUrl, token, authorizationMode: 'SSWS' });
let backoffs = 0;
client.requestExecutor.on('backoff', () => {
  backoffs += 1;
});

const started = Date.now();
const deadline = started + maxSeconds * 1000;
const counts = { updated: 0, no_factor: 0, failed: 0, not_attempted: 0 };
const failures = [];

for (const row of rows) {
  if (Date.now() > deadline) {
    counts.not_attempted += 1;
    continue;
  }
  try {
    const factors = await client.userFactorApi.listFactors({ userId: row.userId });
    let sms = null;
    for await (const f of factors) {
      if (f.factorType === 'sms') {
        sms = f;
        break;
      }
    }
    if (!sms) {
      counts.no_factor += 1;
      continue;
    }
    await client.userFactorApi.unenrollFactor({ userId: row.userId, factorId: sms.id });
    await client.userFactorApi.enrollFactor({
      userId: row.userId,
      updatePhone: true,
      activate: true,
      body: { factorType: 'sms', provider: 'OKTA', profile: { phoneNumber: row.phone } },
    });
    counts.updated += 1;
  } catch (e) {
    counts.failed += 1;
    if (failures.length < 5) {
      failures.push(`${row.userId}: ${e && e.message ? e.message : String(e)}`.slice(0, 300));
    }
  }
}

const wallMs = Date.now() - started;
console.log(JSON.stringify({ rows: rows.length, ...counts, sdk_429_retries: backoffs, wall_ms: wallMs, failures }));
