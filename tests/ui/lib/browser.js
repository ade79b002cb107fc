// Debian's Chromium through playwright-core, pages that record console and page errors,
// bounded waits, axe-core scans and screenshots.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { REPO } from './server.js';

const require = createRequire(import.meta.url);
export const AXE_PATH = require.resolve('axe-core/axe.min.js');
export const SCREENSHOTS = join(REPO, 'target', 'ui-screenshots');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const TIMEOUT = 10000;

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/**
 * A fresh context and page. Console errors and page errors are collected; `allow(re)`
 * accepts expected ones (e.g. the browser's own log line for an expected 409), and
 * `assertClean()` fails the test on any other.
 */
export async function openPage(browser, baseURL, options = {}) {
  const context = await browser.newContext({
    baseURL,
    viewport: { width: 1280, height: 900 },
    locale: 'en-US',
    acceptDownloads: true,
    ...options,
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  const problems = [];
  const allowed = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()} (${msg.location()?.url ?? ''})`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.stack ?? error.message}`));
  return {
    context,
    page,
    allow(re) {
      allowed.push(re);
    },
    problems() {
      return problems.filter((p) => !allowed.some((re) => re.test(p)));
    },
    assertClean() {
      assert.deepEqual(problems.filter((p) => !allowed.some((re) => re.test(p))), [], 'console or page errors');
    },
    /** Closes the context; with `failedAs`, first saves a screenshot for the post-mortem. */
    async close(failedAs) {
      if (failedAs) {
        mkdirSync(SCREENSHOTS, { recursive: true });
        await page.screenshot({ path: join(SCREENSHOTS, `FAILED-${failedAs}.png`) }).catch(() => {});
      }
      await context.close();
    },
  };
}

/** Polls `fn` until it answers truthy; fails after `timeout` ms with `what`. */
export async function waitUntil(fn, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Signs in through the UI's sign-in screen as a demo user. */
export async function signInUI(page, role, choice) {
  await page.goto('/');
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  if (choice) {
    await page.getByLabel(`Demo ${role}`).selectOption({ label: choice });
  }
  await page.getByRole('button', { name: `Sign in as ${role}` }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** The aria snapshot of the focused element, e.g. `- button "Confirm booking"`. */
export async function focused(page) {
  return page.locator(':focus').ariaSnapshot({ timeout: 2000 }).catch(() => '(nothing)');
}

/** Runs axe-core on the page; fails on serious or critical violations. */
export async function assertAccessible(page, screen) {
  await page.addScriptTag({ path: AXE_PATH });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary}`),
    }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `axe: serious or critical violations on ${screen}`);
  return result;
}

/** Saves `<name>-1280.png` and `<name>-360.png` under target/ui-screenshots/; `prepare`
 * runs after each resize (e.g. to scroll). */
export async function screenshots(page, name, { fullPage = true, prepare } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const original = page.viewportSize();
  for (const width of [1280, 360]) {
    await page.setViewportSize({ width, height: width === 360 ? 780 : 900 });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    if (prepare) await prepare();
    await page.screenshot({ path: join(SCREENSHOTS, `${name}-${width}.png`), fullPage });
  }
  await page.setViewportSize(original);
}
