// The patient's flow in a real browser: the happy path checked through the API, dialog
// behaviour, field validation (client and server), a 503 retried without a second
// booking, cancelling from "My consultations", and keyboard-only booking.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { focused, launch, openPage, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import {
  available, confirmAndWait, dayButton, fillVisit, firstAvailable, holdSlot, nameOf, openBooking,
  MARGIN_MS, navLink, selectedDay, slotAt,
} from '../lib/ui.js';

describe('patient', () => {
  let server;
  let browser;
  let asha; // demo patient 67, through the API

  before(async () => {
    server = await startServer();
    browser = await launch();
    asha = await Api.signIn(server.url, 'patient', 67);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('happy path: the demo patient books, sees the confirmation, and the API has it', async () => {
    const p = await openPage(browser, server.url);
    const { page } = p;
    try {
      await signInUI(page, 'patient');
      const item = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: 'Dr. Lukas Brandt' }) });
      await item.getByText('General Practice').waitFor();
      await item.getByText('Europe/Berlin', { exact: true }).waitFor();
      await item.getByText('30 minutes').waitFor();

      const dialog = await openBooking(page, 'Dr. Lukas Brandt');
      // It opens on the first date with a free slot, the API's.
      const expected = await asha.freeSlot(2, 0, 0);
      assert.equal(await selectedDay(dialog).getAttribute('data-date'), expected.date);
      assert.match(await page.evaluate(() => location.hash), new RegExp(`^#/doctors/2/${expected.date}$`));
      const slot = await firstAvailable(dialog);
      const start = await slot.getAttribute('data-start');
      assert.equal(await asha.slotStatus(2, start), 'available');
      await dialog.getByText(/update live/).waitFor();

      await holdSlot(dialog, slot);
      await dialog.getByText(/is held for you\. Time left/).waitFor();

      await dialog.getByLabel('Reason for visit').fill('Persistent cough');
      await dialog.getByText('16 / 500').waitFor();
      await dialog.getByLabel('Symptoms').fill('Dry cough for two weeks, worse at night');
      await dialog.getByLabel('Medical history').fill('Asthma as a child');
      await dialog.getByLabel('Allergies').fill('Penicillin');
      await dialog.getByLabel('Current medications').fill('None');
      await dialog.getByRole('radio', { name: 'Video' }).check();
      await dialog.getByText(/no WhatsApp/).waitFor();
      const reference = await confirmAndWait(page, dialog);

      // The confirmation: both the reference and the session turning ready live.
      await page.getByText(`Your consultation is booked. Reference ${reference}.`).waitFor();
      await page.getByText('Europe/Berlin').first().waitFor();
      await page.getByText('Video (in this app)').waitFor();
      await page.getByText('Ready to join').waitFor({ timeout: 15000 });
      await page.getByRole('heading', { name: 'Join details' }).waitFor();

      // Through the API: exactly this booking, with what was typed.
      const mine = (await asha.consultations()).filter((c) => c.doctor_id === 2);
      assert.equal(mine.length, 1);
      assert.equal(mine[0].reference, reference);
      assert.equal(Date.parse(mine[0].scheduled_at), Date.parse(start));
      assert.equal(mine[0].consult_mode, 'video');
      assert.equal(mine[0].status, 'scheduled');
      assert.equal(mine[0].reason, 'Persistent cough');
      assert.equal(mine[0].allergies, 'Penicillin');
      assert.equal(await asha.slotStatus(2, start), 'booked');

      // "Add to calendar" downloads the .ics with the bearer header: no medical text in it.
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: `Add to calendar, ${reference}` }).click(),
      ]);
      assert.equal(download.suggestedFilename(), `${reference}.ics`);
      const ics = await readFile(await download.path(), 'utf8');
      assert.match(ics, /BEGIN:VCALENDAR/);
      assert.match(ics, new RegExp(reference));
      assert.doesNotMatch(ics, /cough|Penicillin|Asthma/i);

      // A reload keeps the screen.
      await page.reload();
      await page.getByRole('heading', { name: reference, level: 2 }).waitFor();
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('the dialog: focus moves in, Esc closes and returns focus, the hash keeps doctor and date', async () => {
    const p = await openPage(browser, server.url);
    const { page } = p;
    try {
      await signInUI(page, 'patient', 'Tomás Reyes (patient 68)');
      const dialog = await openBooking(page, 'Dr. Kenji Watanabe');
      assert.ok(await dialog.evaluate((d) => d.contains(document.activeElement)), 'focus is inside the dialog');
      await dialog.getByRole('button', { name: 'Refresh' }).waitFor();

      // Pick the second pickable date; the hash follows; a reload opens the same date.
      const days = dialog.getByRole('group', { name: 'Dates' }).getByRole('button', { disabled: false, pressed: false });
      const other = days.first();
      const date = await other.getAttribute('data-date');
      await other.click();
      await waitUntil(async () => (await page.evaluate(() => location.hash)) === `#/doctors/5/${date}`, 'the hash to carry the date');
      await page.reload();
      const again = page.getByRole('dialog', { name: 'Book an appointment with Dr. Kenji Watanabe' });
      await again.waitFor();
      await waitUntil(async () => (await selectedDay(again).getAttribute('data-date')) === date, 'the same date after reload');

      await page.keyboard.press('Escape');
      await again.waitFor({ state: 'detached' });
      await waitUntil(async () => (await page.evaluate(() => location.hash)) === '#/doctors', 'the hash to drop the doctor');
      const opened = await openBooking(page, 'Dr. Kenji Watanabe');
      await opened.getByRole('button', { name: 'Close' }).click();
      await opened.waitFor({ state: 'detached' });
      assert.match(await focused(page), /button "Book Appointment with Dr\. Kenji Watanabe"/);
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('the form: checked before sending, and the server\'s 400 shown by field; nothing booked', async () => {
    const p = await openPage(browser, server.url);
    const { page } = p;
    p.allow(/status of 400/);
    try {
      await signInUI(page, 'patient', 'Tomás Reyes (patient 68)');
      const dialog = await openBooking(page, 'Dr. Amara Okafor');
      // Nothing chosen: three errors, focus on the first.
      await dialog.getByRole('button', { name: 'Confirm booking' }).click();
      await dialog.getByText('Please correct the 3 marked fields.').waitFor();
      await dialog.getByText('Choose a time for your consultation.').waitFor();
      await dialog.getByText('Please fill in reason for visit.').waitFor();
      await dialog.getByText('Choose Voice, Video or Chat.').waitFor();
      assert.equal(await dialog.getByLabel('Reason for visit').getAttribute('maxlength'), '500');
      assert.equal(await dialog.getByLabel('Symptoms').getAttribute('maxlength'), '2000');
      assert.equal(await dialog.getByLabel('Medical history').getAttribute('maxlength'), '4000');
      assert.equal(await dialog.getByLabel('Allergies').getAttribute('maxlength'), '1000');
      assert.equal(await dialog.getByLabel('Current medications').getAttribute('maxlength'), '1000');

      // The server's field errors land on their fields.
      await page.route('**/patient/doctors/book', (route) => route.fulfill({
        status: 400,
        contentType: 'application/json',
        body: JSON.stringify({
          success: false,
          message: 'Invalid symptoms: must be at most 2000 characters',
          error: 'validation_failed',
          errors: { symptoms: ['must be at most 2000 characters'] },
        }),
      }));
      const slot = await firstAvailable(dialog);
      const start = await slot.getAttribute('data-start');
      await holdSlot(dialog, slot);
      await fillVisit(dialog, { symptoms: 'Fever' });
      await dialog.getByRole('button', { name: 'Confirm booking' }).click();
      await dialog.getByText('Must be at most 2000 characters').waitFor();
      assert.equal(await dialog.getByLabel('Symptoms').getAttribute('aria-invalid'), 'true');
      assert.match(await focused(page), /textbox "Symptoms/);
      assert.equal(await dialog.getByLabel('Symptoms').inputValue(), 'Fever');
      const tomas = await Api.signIn(server.url, 'patient', 68);
      assert.equal((await tomas.consultations()).filter((c) => Date.parse(c.scheduled_at) === Date.parse(start)).length, 0);
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('a 503 once, then retry: the same Idempotency-Key, exactly one booking stored', async () => {
    const p = await openPage(browser, server.url);
    const { page } = p;
    p.allow(/status of 503/);
    try {
      await signInUI(page, 'patient');
      const dialog = await openBooking(page, 'Dr. Kenji Watanabe');
      const slot = await firstAvailable(dialog);
      const start = await slot.getAttribute('data-start');
      await holdSlot(dialog, slot);
      await fillVisit(dialog, { mode: 'Chat' });

      // The first attempt reaches the server (and books), but the answer is lost: the
      // browser sees a 503. The retry must not book a second time.
      const keys = [];
      let first = true;
      await page.route('**/patient/doctors/book', async (route) => {
        keys.push(route.request().headers()['idempotency-key']);
        if (first) {
          first = false;
          const real = await route.fetch();
          assert.equal(real.status(), 201);
          await route.fulfill({
            status: 503,
            headers: { 'Retry-After': '1' },
            contentType: 'application/json',
            body: JSON.stringify({ success: false, message: 'The service is busy; nothing was booked. Please retry.', error: 'unavailable' }),
          });
        } else {
          await route.continue();
        }
      });
      const confirm = dialog.getByRole('button', { name: 'Confirm booking' });
      await confirm.click();
      await dialog.getByText(/Please try again/).waitFor();
      await dialog.getByText(/You can try again in 1 s/).waitFor();
      assert.ok(await confirm.isDisabled(), 'Confirm waits for Retry-After');
      await waitUntil(() => confirm.isEnabled(), 'Confirm to be enabled after Retry-After', 5000);
      await confirm.dblclick();
      await page.getByRole('heading', { name: 'Booking confirmed', level: 1 }).waitFor();

      assert.equal(keys.length, 2, 'one retry, the double click sent once');
      assert.ok(keys[0] && keys[0] === keys[1], 'the retry reuses the attempt\'s Idempotency-Key');
      const atStart = (await asha.consultations())
        .filter((c) => c.doctor_id === 5 && Date.parse(c.scheduled_at) === Date.parse(start));
      assert.equal(atStart.length, 1, 'exactly one booking stored');
      assert.equal(atStart[0].consult_mode, 'chat');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('cancel from "My consultations" frees the slot', async () => {
    const slot = await asha.freeSlot(4);
    const booked = await asha.book(4, slot.start, { reason: 'Follow-up' });
    assert.equal(booked.status, 201);
    const { reference } = booked.body.consultation;
    const p = await openPage(browser, server.url);
    const { page } = p;
    try {
      await signInUI(page, 'patient');
      await navLink(page, 'My consultations').click();
      await page.getByRole('heading', { name: 'My consultations', level: 1 }).waitFor();
      const upcoming = page.getByRole('list', { name: 'Upcoming consultations' });
      const item = upcoming.getByRole('listitem').filter({ hasText: reference });
      await item.getByText('Dr. Sofia Alvarez').waitFor();
      await item.getByRole('button', { name: `Cancel ${reference}` }).click();
      const ask = page.getByRole('alertdialog', { name: 'Cancel this consultation?' });
      await ask.waitFor();
      assert.match(await focused(page), /button "Keep it"/);
      await ask.getByRole('button', { name: 'Yes, cancel it' }).click();
      await page.getByText(`${reference} was cancelled. The time is free again.`).waitFor();
      await page.getByRole('list', { name: 'Past and cancelled consultations' }).getByText(reference).waitFor();
      assert.equal(await asha.slotStatus(4, slot.start), 'available');

      // The booking dialog offers that time again.
      await navLink(page, 'Find a doctor').click();
      const dialog = await openBooking(page, 'Dr. Sofia Alvarez');
      await dayButton(dialog, slot.date).click();
      const again = slotAt(dialog, slot.start);
      await waitUntil(async () => (await nameOf(again))?.endsWith('; available'), 'the freed slot to be available');
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('reschedule from "My consultations": the picker shows the current time, the move is one step, the old time is free', async () => {
    // Doctor 4 (60-minute consultations), which the other tests here leave free.
    const from = await asha.freeSlot(4, 2);
    const booked = await asha.book(4, from.start, { reason: 'Check-up', consult_mode: 'chat' });
    assert.equal(booked.status, 201);
    const { id, reference } = booked.body.consultation;
    const p = await openPage(browser, server.url);
    const { page } = p;
    try {
      await signInUI(page, 'patient');
      await navLink(page, 'My consultations').click();
      const upcoming = page.getByRole('list', { name: 'Upcoming consultations' });
      const item = upcoming.getByRole('listitem').filter({ hasText: reference });
      await item.getByRole('button', { name: `Reschedule ${reference}` }).click();
      const dialog = page.getByRole('dialog', { name: 'Reschedule your appointment with Dr. Sofia Alvarez' });
      await dialog.waitFor();
      // It opens on the current time's date, with that time marked and not pickable.
      const current = slotAt(dialog, from.start);
      await waitUntil(async () => /Your current time$/.test(await nameOf(current)), 'the current time to be marked');
      assert.equal(await current.isDisabled(), true);
      assert.equal(await dialog.getByRole('textbox').count(), 0, 'no visit form when moving');

      const target = await firstAvailable(dialog);
      const to = await holdSlot(dialog, target);
      await dialog.getByRole('button', { name: 'Move consultation' }).click();
      await dialog.waitFor({ state: 'detached' });
      await page.getByText(`${reference} is moved to`).waitFor();

      const moved = await asha.ok('GET', `/patient/consultations/${id}`);
      assert.equal(Date.parse(moved.consultation.scheduled_at), Date.parse(to));
      assert.equal(moved.consultation.consult_mode, 'chat');
      assert.equal(moved.consultation.reason, 'Check-up');
      assert.equal(await asha.slotStatus(4, from.start), 'available');
      assert.equal(await asha.slotStatus(4, to), 'booked');
      assert.equal((await asha.consultations()).filter((c) => c.reference === reference).length, 1);
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('a fully booked day can be opened but says "No free slots on this day"', async () => {
    // Dr. Kenji Watanabe works every day, 09:00-12:30 Tokyo: seven slots. Book a whole day.
    const tomas = await Api.signIn(server.url, 'patient', 68);
    const a = await tomas.availability(5, 7);
    const day = a.days.filter((d) => d.enabled && d.slots.every((x) => x.status === 'available'))[1];
    for (const slot of day.slots) assert.equal((await tomas.book(5, slot.start)).status, 201);
    const p = await openPage(browser, server.url);
    const { page } = p;
    try {
      await signInUI(page, 'patient');
      await page.goto(`/#/doctors/5/${day.date}`);
      const dialog = page.getByRole('dialog', { name: /Dr\. Kenji Watanabe/ });
      await dialog.waitFor();
      await dialog.getByText('No free slots on this day. Please choose another date.').waitFor();
      assert.equal(await selectedDay(dialog).getAttribute('data-date'), day.date);
      assert.match(await nameOf(dayButton(dialog, day.date)), /: full$/);
      for (const slot of day.slots) {
        const b = slotAt(dialog, slot.start);
        assert.ok(await b.isDisabled());
        assert.match(await nameOf(b), /; Booked$/);
      }
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('keyboard only: Tab, Enter and Space book a consultation, with a visible focus ring', async () => {
    const p = await openPage(browser, server.url);
    const { page } = p;
    try {
      await page.goto('/');
      await page.getByRole('button', { name: 'Sign in as patient' }).waitFor();
      const tabTo = async (pattern, what, max = 80) => {
        for (let i = 0; i < max; i += 1) {
          await page.keyboard.press('Tab');
          const now = await focused(page);
          if (pattern.test(now)) {
            const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
            assert.notEqual(ring, 'none', `a visible focus ring on ${what}`);
            return now;
          }
        }
        throw new Error(`Tab never reached ${what}`);
      };
      await tabTo(/button "Sign in as patient"/, 'Sign in as patient');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Find a doctor', level: 1 }).waitFor();
      await tabTo(/button "Book Appointment with Dr\. Amara Okafor"/, 'Book Appointment');
      await page.keyboard.press('Enter');
      const dialog = page.getByRole('dialog', { name: /Dr\. Amara Okafor/ });
      await dialog.waitFor();
      await available(dialog).first().waitFor();
      // The first free time far enough ahead (the real clock); Tab on past any too close.
      let start;
      for (;;) {
        await tabTo(/button ".*;\s*available"/, 'a free time');
        start = await page.evaluate(() => document.activeElement.dataset.start);
        if (Date.parse(start) > Date.now() + MARGIN_MS) break;
      }
      await page.keyboard.press('Space');
      await dialog.getByRole('timer').waitFor();
      await tabTo(/textbox "Reason for visit/, 'Reason for visit');
      await page.keyboard.type('Ear pain');
      await tabTo(/radio "Voice"/, 'the Voice radio');
      await page.keyboard.press('Space');
      assert.ok(await dialog.getByRole('radio', { name: 'Voice' }).isChecked());
      await tabTo(/button "Confirm booking"/, 'Confirm booking');
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Booking confirmed', level: 1 }).waitFor();
      const mine = (await asha.consultations()).filter((c) => c.doctor_id === 3);
      assert.equal(mine.length, 1);
      assert.equal(Date.parse(mine[0].scheduled_at), Date.parse(start));
      assert.equal(mine[0].consult_mode, 'voice');
      assert.equal(mine[0].reason, 'Ear pain');
      p.assertClean();
    } finally {
      await p.close();
    }
  });
});
