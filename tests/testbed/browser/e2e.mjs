// End-to-end sign-in in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core). A person opens the broker, signs in on the IdP's own login form, and
// lands on the role picker; screenshots are saved as test artifacts.
//
// Env: BROKER_URL, LOGIN_USER, LOGIN_PASSWORD, ARTIFACTS (folder), EXPECT (comma-separated
// texts the role picker must show), ROLE (optional: a role id to open in the console and
// to get CLI credentials for), IDP (optional: sign in by clicking this IdP on the sign-in
// page, e.g. a SAML IdP; SUBMIT is its login button selector), SHOT (screenshot name).
// Prints one JSON line with what it saw; exits 1 on failure.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BROKER = process.env.BROKER_URL;
const ARTIFACTS = process.env.ARTIFACTS || '.';
const EXPECT = (process.env.EXPECT || '').split(',').filter(Boolean);
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'rolegate-e2e-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS,
  viewport: { width: 1100, height: 800 },
});
const result = { ok: false, steps: [], csp_violations: [] };
try {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.on('console', (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) result.csp_violations.push(m.text()); });
  await page.goto(`${BROKER}/`);
  if (process.env.IDP) {
    // Several IdPs: the sign-in page lists them; pick one like a person would.
    await page.screenshot({ path: path.join(ARTIFACTS, 'sign-in.png'), fullPage: true });
    await page.click(`a[href="/login/${process.env.IDP}"]`);
  }
  await page.waitForSelector('#username', { timeout: 15000 });
  result.steps.push(`idp login form at ${new URL(page.url()).origin}`);
  await page.fill('#username', process.env.LOGIN_USER);
  await page.fill('#password', process.env.LOGIN_PASSWORD);
  await Promise.all([page.waitForURL(`${BROKER}/`, { timeout: 15000 }), page.click(process.env.SUBMIT || '#submit')]);
  await page.waitForSelector('h1', { timeout: 15000 });
  result.steps.push(`landed on ${page.url()}`);
  const text = await page.innerText('main');
  result.heading = await page.innerText('h1');
  result.accounts = await page.$$eval('section.account h2', (hs) => hs.map((h) => h.innerText));
  result.roles = await page.$$eval('li.role strong', (rs) => rs.map((r) => r.innerText));
  await page.screenshot({ path: path.join(ARTIFACTS, process.env.SHOT || 'role-picker.png'), fullPage: true });
  const missing = EXPECT.filter((t) => !text.includes(t));
  if (missing.length) throw new Error(`role picker lacks ${JSON.stringify(missing)}`);
  const role = process.env.ROLE;
  if (role) {
    // "Console": POST -> federation endpoint -> the (fake) AWS console.
    await Promise.all([
      page.waitForURL((u) => u.pathname.startsWith('/console'), { timeout: 15000 }),
      page.click(`#role-${role} button[formaction$="/console"]`),
    ]);
    result.console_url = page.url();
    result.console_text = await page.innerText('body');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console.png'), fullPage: true });
    result.steps.push(`console at ${result.console_url}`);
    // "CLI credentials": the credentials page.
    await page.goto(`${BROKER}/`);
    await Promise.all([
      page.waitForURL((u) => u.pathname.endsWith('/credentials'), { timeout: 15000 }),
      page.click(`#role-${role} button:not([formaction]):not(.copy)`),
    ]);
    await page.waitForSelector('#access-key-id');
    result.credentials = {
      access_key_id: await page.innerText('#access-key-id'),
      secret_access_key: await page.innerText('#secret-access-key'),
      session_token: await page.innerText('#session-token'),
    };
    result.copy_buttons_visible = await page.$$eval('button[data-copy]', (bs) => bs.filter((b) => !b.hidden).length);
    await page.screenshot({ path: path.join(ARTIFACTS, 'cli-credentials.png'), fullPage: true });
    result.steps.push('cli credentials shown');
  }
  if (result.csp_violations.length) throw new Error('CSP violations on the page');
  result.ok = true;
} catch (e) {
  result.error = String(e?.message || e);
  try { await ctx.pages()[0]?.screenshot({ path: path.join(ARTIFACTS, 'failure.png'), fullPage: true }); } catch {}
} finally {
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
