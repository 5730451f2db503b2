// Runs the test single-page app (tests/testbed/spa) in real headless Chromium: it signs in
// at the OpenID Provider and exchanges the token at rolegate with fetch. Prints one JSON
// line: the ARN it showed, or the error it hit (a CORS refusal reads "Failed to fetch").
// Env: START_URL, LOGIN_USER, LOGIN_PASSWORD, ARTIFACTS, SHOT.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'rolegate-spa-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
});
const result = { ok: false, console: [] };
try {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.on('console', (m) => result.console.push(m.text()));
  await page.goto(process.env.START_URL);
  await page.waitForSelector('#username', { timeout: 15000 });
  await page.fill('#username', process.env.LOGIN_USER);
  await page.fill('#password', process.env.LOGIN_PASSWORD);
  await page.click('#submit');
  await page.waitForFunction(() => ['done', 'failed'].includes(document.getElementById('status')?.textContent), null, { timeout: 20000 });
  result.status = await page.textContent('#status');
  result.arn = await page.textContent('#result');
  result.error = await page.textContent('#error');
  await page.screenshot({ path: path.join(process.env.ARTIFACTS || '.', `${process.env.SHOT || 'spa'}.png`) });
  result.ok = true;
} catch (e) {
  result.failure = String(e && e.message || e);
} finally {
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
