// Just-in-time elevation in real headless Chromium: the requester (REQUESTER) signs in at
// BROKER, asks for ROLE for DURATION with a REASON and TICKET from the role picker; the
// approver (APPROVER) signs in at another instance (APPROVER_BROKER) in another browser
// context, opens "Requests to decide" and approves with a comment; the requester reloads
// the picker (the role now shows with its time left), opens the console sign-in for it,
// then ends the elevation with "End now". Prints one JSON line with what each saw.
//
// Env: BROKER, APPROVER_BROKER, REQUESTER/REQUESTER_PASSWORD, APPROVER/APPROVER_PASSWORD,
// ROLE, DURATION, REASON, TICKET, ARTIFACTS, SHOT.
import { chromium } from 'playwright-core';
import path from 'node:path';

const ARTIFACTS = process.env.ARTIFACTS || '.';
const SHOT = process.env.SHOT || 'elevation';
const ROLE = process.env.ROLE;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS });
const result = { ok: false, steps: [] };

let current = null;
async function signIn(page, base, user, password) {
  current = page;
  await page.goto(`${base}/`);
  if (await page.$('a[href^="/login/corp"]')) await page.click('a[href^="/login/corp"]');
  await page.waitForSelector('#username', { timeout: 15000 });
  await page.fill('#username', user);
  await page.fill('#password', password);
  await page.click('#submit');
  await page.waitForSelector('form[action="/logout"]', { timeout: 15000 });
}

async function approveFirst(base, user, password) {
  // Signed in at BROKER (the IdP knows its callback); the session cookie goes to every
  // instance on the host, so the approval happens at `base`.
  const page = await (await browser.newContext()).newPage();
  await signIn(page, process.env.BROKER, user, password);
  await page.goto(`${base}/requests`);
  result.queue = await page.$$eval('section.request', (s) => s.map((x) => x.innerText));
  await page.fill('section.request input[name="comment"]', 'ok for the incident');
  await page.click('section.request button[value="approve"]');
  await page.waitForSelector('#notice', { timeout: 15000 });
  result.approved_notice = await page.innerText('#notice');
  return page;
}

try {
  if (process.env.MODE === 'approve') {
    // Only approve what waits (the requester is elsewhere: the CLI).
    await approveFirst(process.env.APPROVER_BROKER, process.env.APPROVER, process.env.APPROVER_PASSWORD);
    result.ok = true;
    throw null;
  }
  const bob = await (await browser.newContext()).newPage();
  await signIn(bob, process.env.BROKER, process.env.REQUESTER, process.env.REQUESTER_PASSWORD);
  result.eligible_before = await bob.$$eval('#eligible form', (f) => f.map((x) => x.id));
  result.role_before = (await bob.$(`#role-${ROLE}`)) !== null;
  const form = `#ask-${ROLE}`;
  await bob.fill(`${form} input[name="duration"]`, process.env.DURATION);
  await bob.fill(`${form} input[name="reason"]`, process.env.REASON);
  if (await bob.$(`${form} input[name="ticket"]`)) await bob.fill(`${form} input[name="ticket"]`, process.env.TICKET);
  await bob.click(`${form} button`);
  await bob.waitForSelector('#notice', { timeout: 15000 });
  result.requested_notice = await bob.innerText('#notice');
  result.my_requests = await bob.$$eval('tr.my-request', (rows) => rows.map((r) => r.innerText));
  await bob.screenshot({ path: path.join(ARTIFACTS, `${SHOT}-requested.png`), fullPage: true });
  result.steps.push('requested');

  const alice = await (await browser.newContext()).newPage();
  await signIn(alice, process.env.BROKER, process.env.APPROVER, process.env.APPROVER_PASSWORD);
  result.to_decide_link = (await alice.$('#to-decide')) !== null;
  await alice.goto(`${process.env.APPROVER_BROKER}/requests`);
  result.queue = await alice.$$eval('section.request', (s) => s.map((x) => x.innerText));
  await alice.fill('section.request input[name="comment"]', 'ok for the incident');
  await alice.click('section.request button[value="approve"]');
  await alice.waitForSelector('#notice', { timeout: 15000 });
  result.approved_notice = await alice.innerText('#notice');
  await alice.screenshot({ path: path.join(ARTIFACTS, `${SHOT}-approved.png`), fullPage: true });
  result.steps.push('approved on another instance');

  await bob.reload();
  result.elevated = (await bob.$(`#elevated-${ROLE}`)) ? await bob.innerText(`#elevated-${ROLE}`) : null;
  await bob.screenshot({ path: path.join(ARTIFACTS, `${SHOT}-elevated.png`), fullPage: true });
  // The console: the form posts to /roles/ROLE/console, which redirects to the federation.
  const [console] = await Promise.all([
    bob.waitForNavigation({ timeout: 15000 }),
    bob.click(`#role-${ROLE} button[formaction="/roles/${ROLE}/console"]`),
  ]);
  result.console_url = bob.url();
  result.console_status = console ? console.status() : null;
  await bob.goto(`${process.env.BROKER}/`);
  await bob.click('tr.my-request button');
  await bob.waitForSelector('#notice', { timeout: 15000 });
  result.ended_notice = await bob.innerText('#notice');
  result.role_after = (await bob.$(`#role-${ROLE}`)) !== null;
  result.ok = true;
} catch (e) {
  if (e !== null) {
    result.error = String(e && e.message || e);
    if (current) {
      result.at = current.url();
      result.page = (await current.content()).slice(0, 2000);
    }
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
