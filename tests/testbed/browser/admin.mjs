// An administrator ends someone's access in real headless Chromium (Debian's chromium via
// playwright-core), while that person is signed in in another browser context: the person
// (PERSON_USER) signs in and sees the role picker; the administrator (ADMIN_USER) signs
// in, opens /admin, finds the person by FIND, opens their page, reads what they hold, and
// clicks "Revoke everything" with a reason; the person's next page is read. Prints one
// JSON line with what each saw; exits 1 on failure.
//
// Env: BROKER, PERSON_USER/PERSON_PASSWORD, ADMIN_USER/ADMIN_PASSWORD, FIND, REASON,
// IDP (the sign-in option to click when there are several), ARTIFACTS, SHOT.
import { chromium } from 'playwright-core';
import path from 'node:path';

const ARTIFACTS = process.env.ARTIFACTS || '.';
const SHOT = process.env.SHOT || 'admin';
const BROKER = process.env.BROKER;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ARGS });
const result = { ok: false, steps: [] };

async function signIn(page, user, password) {
  await page.goto(`${BROKER}/`);
  if (process.env.IDP && await page.$(`a[href^="/login/${process.env.IDP}"]`)) {
    await page.click(`a[href^="/login/${process.env.IDP}"]`);
  }
  await page.waitForSelector('#username', { timeout: 15000 });
  await page.fill('#username', user);
  await page.fill('#password', password);
  await page.click('#submit');
  await page.waitForSelector('form[action="/logout"]', { timeout: 15000 });
}

try {
  const person = await (await browser.newContext()).newPage();
  await signIn(person, process.env.PERSON_USER, process.env.PERSON_PASSWORD);
  result.person_before = await person.innerText('main');
  result.steps.push('the person sees the role picker');

  const admin = await (await browser.newContext()).newPage();
  await signIn(admin, process.env.ADMIN_USER, process.env.ADMIN_PASSWORD);
  result.admin_link = (await admin.$('a[href="/admin"]')) !== null;
  await admin.click('a[href="/admin"]');
  await admin.fill('#q', process.env.FIND);
  await admin.click('form[action="/admin"] button');
  await admin.waitForSelector('#people', { timeout: 15000 });
  result.search_text = await admin.innerText('#people');
  await admin.click('#people a');
  await admin.waitForSelector('#holdings', { timeout: 15000 });
  result.holdings = await admin.$$eval('tr.holding', (rows) => rows.map((r) => r.innerText));
  await admin.screenshot({ path: path.join(ARTIFACTS, `${SHOT}-person.png`), fullPage: true });
  await admin.fill('#revoke-all input[name="reason"]', process.env.REASON);
  await admin.click('#revoke-all button');
  await admin.waitForSelector('#notice', { timeout: 15000 });
  result.notice = await admin.innerText('#notice');
  result.holdings_after = await admin.$$eval('tr.holding', (rows) => rows.length);
  await admin.screenshot({ path: path.join(ARTIFACTS, `${SHOT}-revoked.png`), fullPage: true });
  result.steps.push('the administrator revoked everything');

  const res = await person.reload();
  result.person_after_status = res.status();
  result.person_after = await person.innerText('main');
  await person.screenshot({ path: path.join(ARTIFACTS, `${SHOT}-person-after.png`), fullPage: true });
  result.ok = true;
} catch (e) {
  result.error = String(e && e.message || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
