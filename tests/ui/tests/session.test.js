// Signing in: the development sign-in, a 401 returning to sign-in, and the production
// handoff from the clinic platform (URL fragment read once and removed, or postMessage
// from the framing host page); in production the sign-in screen points to the platform.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { launch, openPage, signInUI, waitUntil } from '../lib/browser.js';
import { mintToken, PRODUCTION, startServer } from '../lib/server.js';

describe('signing in', () => {
  let dev;
  let prod;
  let browser;

  before(async () => {
    [dev, prod] = await Promise.all([startServer(), startServer(PRODUCTION)]);
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await Promise.all([dev?.stop(), prod?.stop()]);
  });

  test('development: a rejected token (401) returns to sign-in with a message', async () => {
    const p = await openPage(browser, dev.url);
    const { page } = p;
    p.allow(/status of 401/);
    try {
      await signInUI(page, 'patient');
      await page.getByRole('heading', { name: 'Find a doctor', level: 1 }).waitFor();
      // The same claims, a forged signature: the server answers 401.
      await page.evaluate(() => {
        const key = 'consult-scheduler.session';
        const stored = JSON.parse(sessionStorage.getItem(key));
        const [head, body] = stored.token.split('.');
        sessionStorage.setItem(key, JSON.stringify({ ...stored, token: `${head}.${body}.forged` }));
      });
      await page.reload();
      await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
      await page.getByText('Your session has ended. Please sign in again.').waitFor();
      assert.equal(await page.evaluate(() => location.hash), '#/signin');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('production: no dev sign-in; #token= signs in once, leaves the URL, survives a reload', async () => {
    const p = await openPage(browser, prod.url);
    const { page } = p;
    p.allow(/status of 404/); // GET /dev/users does not exist in production
    try {
      await page.goto('/');
      await page.getByText('Open this page from your clinic platform.').waitFor();
      assert.equal(await page.getByRole('button', { name: /^Sign in as/ }).count(), 0);
      assert.equal((await fetch(`${prod.url}/dev/sign-in`, { method: 'POST' })).status, 404);

      const token = mintToken(PRODUCTION, 'patient', 67);
      await page.goto(`/#token=${token}`);
      await page.getByRole('heading', { name: 'Find a doctor', level: 1 }).waitFor();
      await page.getByRole('heading', { name: 'Dr. Meera Iyer' }).waitFor();
      assert.ok(!page.url().includes(token), 'the token is gone from the address bar');
      assert.equal(await page.evaluate(() => location.hash), '#/doctors');
      await page.goBack().catch(() => {});
      assert.ok(!page.url().includes('token='), 'and from the history entry');
      await page.goto('/#/consultations');
      await page.getByRole('heading', { name: 'My consultations', level: 1 }).waitFor();
      await page.reload();
      await page.getByRole('heading', { name: 'My consultations', level: 1 }).waitFor();
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('production: the framing host hands the token by postMessage, checked against the referrer origin', async () => {
    let host;
    const p = await openPage(browser, prod.url);
    const { page } = p;
    p.allow(/status of 404/);
    try {
      const token = mintToken(PRODUCTION, 'doctor', 3);
      // The host page, from another origin on this machine (another port): it frames the
      // UI and answers its "ready" with the token.
      const hostPage = `<!doctype html><html lang="en"><title>Clinic</title><h1>Clinic platform</h1>
<iframe title="Consult Scheduler" src="${prod.url}/" width="1200" height="800"></iframe>
<script>
  addEventListener('message', (e) => {
    if (e.data && e.data.type === 'consult-scheduler-ready') {
      e.source.postMessage({ type: 'consult-scheduler-token', token: ${JSON.stringify(token)}, name: 'Dr. Amara Okafor' }, ${JSON.stringify(prod.url)});
    }
  });
</script>`;
      host = createServer((req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        res.end(hostPage);
      });
      await new Promise((r) => host.listen(0, '127.0.0.1', r));
      await page.goto(`http://127.0.0.1:${host.address().port}/portal`);
      const frame = page.frameLocator('iframe[title="Consult Scheduler"]');
      await frame.getByRole('heading', { name: 'My schedule', level: 1 }).waitFor();
      await frame.getByText('Dr. Amara Okafor · Pediatrics').waitFor();
      await waitUntil(async () => (await frame.getByRole('button', { name: 'Sign out' }).count()) === 1, 'signed in');
      p.assertClean();
    } finally {
      await p.close();
      host?.close();
    }
  });
});
