// The doctor's schedule editor and availability toggle, their consultations with join
// details, and the admin's create-and-approve: each seen from the patient's side.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { launch, openPage, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import { dayButton, nameOf, openBooking, selectedDay } from '../lib/ui.js';

const WEEKDAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

describe('doctor and admin', () => {
  let server;
  let browser;
  let asha;

  before(async () => {
    server = await startServer();
    browser = await launch();
    asha = await Api.signIn(server.url, 'patient', 67);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the doctor disables a day and the patient no longer gets it; the toggle hides the doctor', async () => {
    const first = await asha.freeSlot(2);
    const dayName = WEEKDAY_NAMES[new Date(`${first.date}T00:00:00Z`).getUTCDay()];
    const booked = await asha.book(2, first.start, { reason: 'Check-up' });
    assert.equal(booked.status, 201);
    const { reference, id } = booked.body.consultation;
    await waitUntil(async () => (await asha.ok('GET', `/patient/consultations/${id}`)).consultation.session_status === 'ready',
      'the session to be ready');

    const doc = await openPage(browser, server.url);
    const pat = await openPage(browser, server.url);
    try {
      await signInUI(doc.page, 'doctor', 'Dr. Lukas Brandt, General Practice');
      const page = doc.page;
      await page.getByRole('heading', { name: 'My schedule', level: 1 }).waitFor();

      // Their consultations, with join details.
      const list = page.getByRole('list', { name: 'Your consultations' });
      const item = list.getByRole('listitem').filter({ hasText: reference });
      await item.getByText('Patient 67').waitFor();
      await item.getByRole('button', { name: `Join details for ${reference}` }).click();
      await item.getByText('moderator').waitFor();

      // Close the day of the first free slot.
      const open = page.getByRole('checkbox', { name: `Open on ${dayName}` });
      assert.ok(await open.isChecked());
      await open.uncheck();
      assert.ok(await page.getByLabel(`${dayName} start`).isDisabled());
      await page.getByRole('button', { name: 'Save schedule' }).click();
      await page.getByText(/Schedule saved/).waitFor();
      const a = await asha.availability(2, 14, first.date);
      assert.equal(a.days.find((d) => d.date === first.date).enabled, false);
      assert.equal(a.availability_schedule[dayName.toLowerCase()].enabled, false);

      // The patient no longer gets that day.
      await signInUI(pat.page, 'patient');
      const dialog = await openBooking(pat.page, 'Dr. Lukas Brandt');
      assert.notEqual(await selectedDay(dialog).getAttribute('data-date'), first.date);
      const closed = dayButton(dialog, first.date);
      assert.ok(await closed.isDisabled());
      assert.match(await nameOf(closed), /: closed$/);
      await pat.page.keyboard.press('Escape');

      // Not taking bookings: gone from the patient's list; back on: there again.
      await page.getByRole('switch', { name: 'Taking new bookings' }).uncheck();
      await page.getByText('You are not taking new bookings.', { exact: false }).waitFor();
      await pat.page.reload();
      await pat.page.getByRole('heading', { name: 'Dr. Lukas Brandt' }).waitFor({ state: 'detached' });
      await pat.page.getByRole('heading', { name: 'Dr. Meera Iyer' }).waitFor();
      await page.getByRole('switch', { name: 'Taking new bookings' }).check();
      await page.getByText('You are taking new bookings.').waitFor();
      await pat.page.reload();
      await pat.page.getByRole('heading', { name: 'Dr. Lukas Brandt' }).waitFor();
      doc.assertClean();
      pat.assertClean();
    } finally {
      await doc.close();
      await pat.close();
    }
  });

  test('the admin creates and approves a doctor, and the patient sees them', async () => {
    const adm = await openPage(browser, server.url);
    const pat = await openPage(browser, server.url);
    try {
      const page = adm.page;
      await signInUI(page, 'admin');
      await page.getByRole('heading', { name: 'Doctors', level: 1 }).waitFor();
      await page.getByLabel('Name').fill('Dr. Ada Quinn');
      await page.getByLabel('Specialty').fill('Endocrinology');
      await page.getByLabel('Timezone').selectOption('Europe/London');
      await page.getByLabel('Consultation length').selectOption({ label: '30 minutes' });
      await page.getByRole('checkbox', { name: 'Open on Saturday' }).check();
      await page.getByLabel('Saturday start').fill('10:00');
      await page.getByLabel('Saturday end').fill('12:00');
      await page.getByRole('button', { name: 'Create doctor' }).click();
      await page.getByText('Dr. Ada Quinn was added and is awaiting approval.').waitFor();
      const row = page.getByRole('list', { name: 'Doctors' }).getByRole('listitem')
        .filter({ has: page.getByRole('heading', { name: 'Dr. Ada Quinn' }) });
      await row.getByText('Awaiting approval').waitFor();
      await row.getByText(/Europe\/London/).waitFor();

      // Not yet bookable.
      const before = (await asha.ok('GET', '/patient/doctors')).doctors;
      assert.ok(!before.some((d) => d.name === 'Dr. Ada Quinn'));

      await row.getByRole('button', { name: 'Approve Dr. Ada Quinn' }).click();
      await page.getByText('Dr. Ada Quinn is approved and patients can book them now.').waitFor();
      await row.getByText('Approved', { exact: true }).waitFor();
      const admin = await Api.signIn(server.url, 'admin');
      const created = (await admin.ok('GET', '/admin/doctors')).doctors.find((d) => d.name === 'Dr. Ada Quinn');
      assert.equal(created.is_approved, true);
      assert.equal(created.timezone, 'Europe/London');
      assert.equal(created.availability_schedule.saturday.enabled, true);
      assert.equal(created.availability_schedule.saturday.start, '10:00');

      await signInUI(pat.page, 'patient');
      const item = pat.page.getByRole('listitem').filter({ has: pat.page.getByRole('heading', { name: 'Dr. Ada Quinn' }) });
      await item.getByText('Endocrinology').waitFor();
      await openBooking(pat.page, 'Dr. Ada Quinn');
      adm.assertClean();
      pat.assertClean();
    } finally {
      await adm.close();
      await pat.close();
    }
  });
});
