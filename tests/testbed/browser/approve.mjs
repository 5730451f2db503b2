// A person approves a command-line login in real headless Chromium (Debian's chromium via
// playwright-core): opens START_URL (the CLI's /oauth/authorize address, or
// /device?user_code=…), signs in on the IdP's own form (clicking IDP on the sign-in page
// when there are several), confirms the device code if asked, reads the approval page and
// clicks Approve. Prints one JSON line with what it saw; exits 1 on failure.
//
// Env: START_URL, LOGIN_USER, LOGIN_PASSWORD, IDP (optional), SUBMIT (the IdP form's
// submit button, default #submit), ARTIFACTS (folder), SHOT (screenshot name prefix),
// DONE_URL_PREFIX (loopback: where the broker must send the browser at the end).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ARTIFACTS = process.env.ARTIFACTS || '.';
const SHOT = process.env.SHOT || 'cli-approval';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'rolegate-approve-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  viewport: { width: 1100, height: 900 },
});
const result = { ok: false, steps: [], csp_violations: [] };
try {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.on('console', (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) result.csp_violations.push(m.text()); });
  await page.goto(process.env.START_URL);
  if (process.env.IDP) {
    await page.click(`a[href^="/login/${process.env.IDP}"]`);
  }
  await page.waitForSelector('#username', { timeout: 15000 });
  result.steps.push(`idp login form at ${new URL(page.url()).origin}`);
  await page.fill('#username', process.env.LOGIN_USER);
  await page.fill('#password', process.env.LOGIN_PASSWORD);
  await page.click(process.env.SUBMIT || '#submit');
  // The device flow asks for the code (pre-filled from the link: it still needs a click).
  await page.waitForSelector('#approve, #user_code', { timeout: 15000 });
  if (await page.$('#user_code')) {
    result.prefilled = await page.inputValue('#user_code');
    await page.screenshot({ path: path.join(ARTIFACTS, `${SHOT}-code.png`), fullPage: true });
    await page.click('#continue');
    await page.waitForSelector('#approve', { timeout: 15000 });
  }
  result.approval_text = await page.innerText('#approval');
  await page.screenshot({ path: path.join(ARTIFACTS, `${SHOT}.png`), fullPage: true });
  result.steps.push(`approval page at ${page.url()}`);
  const prefix = process.env.DONE_URL_PREFIX;
  if (prefix) {
    await Promise.all([page.waitForURL((u) => u.href.startsWith(prefix), { timeout: 15000 }), page.click('#approve')]);
  } else {
    await page.click('#approve');
    await page.waitForSelector('#done', { timeout: 15000 });
  }
  result.final_url = page.url();
  result.final_text = await page.innerText('body');
  result.steps.push(`done at ${result.final_url}`);
  result.ok = true;
} catch (e) {
  result.error = String(e && e.message || e);
  try { await ctx.pages()[0]?.screenshot({ path: path.join(ARTIFACTS, `${SHOT}-failure.png`), fullPage: true }); } catch {}
} finally {
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
