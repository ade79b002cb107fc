// Every screen: an axe-core scan (no serious or critical violations), no sideways
// overflow at 360 px, and screenshots at 360 px and 1280 px under target/ui-screenshots/.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { assertAccessible, launch, openPage, screenshots, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import { confirmAndWait, fillVisit, firstAvailable, holdSlot, navLink, openBooking } from '../lib/ui.js';

/** The page fits 360 px: nothing wider than the viewport. */
async function assertFits(page, what) {
  await page.setViewportSize({ width: 360, height: 780 });
  const overflow = await page.evaluate(() => {
    const wide = [];
    const limit = document.documentElement.clientWidth;
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.right > limit + 1 && getComputedStyle(el).position !== 'fixed') {
        wide.push(`${el.tagName.toLowerCase()} "${(el.getAttribute('aria-label') ?? el.textContent ?? '').trim().slice(0, 40)}" right=${Math.round(r.right)}`);
      }
    }
    return { scroll: document.documentElement.scrollWidth, limit, wide: wide.slice(0, 5) };
  });
  assert.ok(overflow.scroll <= overflow.limit && overflow.wide.length === 0,
    `${what} overflows 360 px: ${JSON.stringify(overflow)}`);
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function check(p, name) {
  await assertAccessible(p.page, name);
  await assertFits(p.page, name);
  await screenshots(p.page, name);
}

describe('every screen: accessible, fits 360 px, screenshots', () => {
  let server;
  let browser;
  let patient;
  let doctor;
  let admin;

  before(async () => {
    server = await startServer();
    browser = await launch();
    // The CSP would refuse the injected axe script: these contexts bypass it.
    patient = await openPage(browser, server.url, { bypassCSP: true });
    doctor = await openPage(browser, server.url, { bypassCSP: true });
    admin = await openPage(browser, server.url, { bypassCSP: true });
  });

  after(async () => {
    await patient?.close();
    await doctor?.close();
    await admin?.close();
    await browser?.close();
    await server?.stop();
  });

  test('sign-in', async () => {
    await patient.page.goto('/');
    await patient.page.getByRole('button', { name: 'Sign in as doctor' }).waitFor();
    await check(patient, 'sign-in');
    patient.assertClean();
  });

  test('doctors list', async () => {
    await signInUI(patient.page, 'patient');
    await patient.page.getByRole('heading', { name: 'Dr. Meera Iyer' }).waitFor();
    await check(patient, 'doctors');
    patient.assertClean();
  });

  test('booking dialog, with a held time and the form filled', async () => {
    const dialog = await openBooking(patient.page, 'Dr. Lukas Brandt');
    await holdSlot(dialog, await firstAvailable(dialog));
    await fillVisit(dialog, { symptoms: 'Sore throat, mild fever' });
    await assertAccessible(patient.page, 'booking dialog');
    await screenshots(patient.page, 'booking', {
      fullPage: false,
      prepare: () => dialog.evaluate((d) => { d.scrollTop = 0; }),
    });
    await screenshots(patient.page, 'booking-form', {
      fullPage: false,
      prepare: () => dialog.evaluate((d) => { d.scrollTop = d.scrollHeight; }),
    });
    // The dialog itself fits 360 px.
    await patient.page.setViewportSize({ width: 360, height: 780 });
    const fits = await dialog.evaluate((d) => d.scrollWidth <= d.clientWidth);
    assert.ok(fits, 'the dialog has no sideways scroll at 360 px');
    await patient.page.setViewportSize({ width: 1280, height: 900 });
    patient.dialog = dialog;
    patient.assertClean();
  });

  test('confirmation', async () => {
    await confirmAndWait(patient.page, patient.dialog);
    await patient.page.getByText('Ready to join').waitFor({ timeout: 15000 });
    await check(patient, 'confirmation');
    patient.assertClean();
  });

  test('my consultations', async () => {
    await navLink(patient.page, 'My consultations').click();
    await patient.page.getByRole('heading', { name: /^Upcoming \(1\)$/ }).waitFor();
    await check(patient, 'consultations');
    patient.assertClean();
  });

  test('the reschedule dialog', async () => {
    const reschedule = patient.page.getByRole('button', { name: /^Reschedule CONS-/ });
    await reschedule.click();
    const dialog = patient.page.getByRole('dialog', { name: /^Reschedule your appointment with / });
    await dialog.waitFor();
    await dialog.getByText('Your current time').waitFor();
    await check(patient, 'reschedule');
    await dialog.getByRole('button', { name: 'Close', exact: true }).click();
    await dialog.waitFor({ state: 'detached' });
    patient.assertClean();
  });

  test('inbox, with its unread count', async () => {
    const asha = await Api.signIn(server.url, 'patient', 67);
    await waitUntil(async () => (await asha.ok('GET', '/notifications?unread_only=true')).notifications.length >= 1, 'a notification');
    await patient.page.reload();
    const link = navLink(patient.page, /^Inbox\s*,\s*\d+\s+unread$/);
    await link.click();
    await patient.page.getByRole('heading', { name: 'Inbox', level: 1 }).waitFor();
    await patient.page.getByText(/^\d+ unread$/).waitFor();
    await check(patient, 'inbox');
    const unread = (await asha.ok('GET', '/notifications?unread_only=true')).notifications.length;
    await patient.page.getByRole('button', { name: /^Mark as read: / }).first().click();
    await waitUntil(async () => (await asha.ok('GET', '/notifications?unread_only=true')).notifications.length === unread - 1, 'one marked read');
    await patient.page.getByRole('button', { name: 'Mark all as read' }).click();
    await patient.page.getByText('No unread notifications.').waitFor();
    await navLink(patient.page, /^Inbox$/).waitFor();
    patient.assertClean();
  });

  test('doctor schedule', async () => {
    await signInUI(doctor.page, 'doctor', 'Dr. Lukas Brandt, General Practice');
    await doctor.page.getByRole('heading', { name: 'Weekly schedule' }).waitFor();
    await doctor.page.getByRole('list', { name: 'Your consultations' }).waitFor();
    await check(doctor, 'doctor');
    doctor.assertClean();
  });

  test('admin', async () => {
    await signInUI(admin.page, 'admin');
    await admin.page.getByRole('heading', { name: 'Dr. Kenji Watanabe' }).waitFor();
    await check(admin, 'admin');
    admin.assertClean();
  });
});
