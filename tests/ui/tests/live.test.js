// Live slot updates across two browser contexts on one doctor: a hold shows as held, a
// booking turns the slot Booked, a cancellation frees it: within 2 s, with no click.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { launch, openPage, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import {
  confirmAndWait, fillVisit, firstAvailable, holdSlot, nameOf, openBooking, selectedDay, showDate, slotAt,
  waitSlotState,
} from '../lib/ui.js';

describe('live updates', () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('two patients on one doctor: held, then Booked, then free again, within 2 s each', async () => {
    const a = await openPage(browser, server.url);
    const b = await openPage(browser, server.url);
    try {
      await signInUI(a.page, 'patient', 'Asha Patel (patient 67)');
      await signInUI(b.page, 'patient', 'Tomás Reyes (patient 68)');
      const watching = await openBooking(a.page, 'Dr. Meera Iyer');
      const booking = await openBooking(b.page, 'Dr. Meera Iyer');
      assert.equal(await selectedDay(watching).getAttribute('data-date'), await selectedDay(booking).getAttribute('data-date'));
      await watching.getByText('Live updates on').waitFor();
      await booking.getByText('Live updates on').waitFor();

      const slotB = await firstAvailable(booking);
      await showDate(watching, await selectedDay(booking).getAttribute('data-date'));
      const start = await slotB.getAttribute('data-start');
      const slotA = slotAt(watching, start);
      assert.match(await nameOf(slotA), /; available$/);

      // B holds it: A sees it held.
      await holdSlot(booking, slotB);
      let t0 = Date.now();
      await waitSlotState(slotA, 'Held by another patient', 2000);
      await slotA.getByText('Held').waitFor();
      const heldAfter = Date.now() - t0;

      // B books it: A sees it Booked.
      await fillVisit(booking);
      const answered = b.page.waitForResponse((r) => r.url().endsWith('/patient/doctors/book'));
      const confirmed = confirmAndWait(b.page, booking);
      await answered;
      t0 = Date.now();
      await waitSlotState(slotA, 'Booked', 2000);
      await slotA.getByText('Booked').waitFor();
      const bookedAfter = Date.now() - t0;
      const reference = await confirmed;

      // B cancels through the API: A sees it free again.
      const tomas = await Api.signIn(server.url, 'patient', 68);
      const [mine] = (await tomas.consultations()).filter((c) => c.reference === reference);
      await tomas.ok('POST', `/patient/consultations/${mine.id}/cancel`, {});
      t0 = Date.now();
      await waitUntil(async () => (await nameOf(slotA)).endsWith('; available') && (await slotA.isEnabled()),
        'the cancelled slot to be free again', 2000);
      const freedAfter = Date.now() - t0;
      assert.ok(heldAfter < 2000 && bookedAfter < 2000 && freedAfter < 2000,
        `held ${heldAfter} ms, booked ${bookedAfter} ms, freed ${freedAfter} ms`);
      a.assertClean();
      b.assertClean();
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('leaving the page or closing the dialog gives a held time back at once; a hold left by a lost tab comes back as yours', async () => {
    const a = await openPage(browser, server.url);
    const b = await openPage(browser, server.url);
    try {
      await signInUI(a.page, 'patient', 'Asha Patel (patient 67)');
      await signInUI(b.page, 'patient', 'Tomás Reyes (patient 68)');
      const watching = await openBooking(b.page, 'Dr. Lukas Brandt');
      await watching.getByText('Live updates on').waitFor();
      let holding = await openBooking(a.page, 'Dr. Lukas Brandt');
      const start = await holdSlot(holding, await firstAvailable(holding));
      await showDate(watching, await selectedDay(holding).getAttribute('data-date'));
      await waitSlotState(slotAt(watching, start), 'Held by another patient', 2000);

      // A reload leaves the page: the hold is released as it goes (an idle or closed page
      // must not keep a time from others), and the other patient sees it free, no click.
      await a.page.reload();
      await waitUntil(async () => (await nameOf(slotAt(watching, start))).endsWith('; available'),
        'the slot to be free once the holding page left', 2000);

      // The reloaded page reopens the dialog from the URL. Close it (it may briefly have
      // taken up the hold the leaving page was still releasing: closing releases again).
      holding = a.page.getByRole('dialog', { name: 'Book an appointment with Dr. Lukas Brandt' });
      await holding.waitFor();
      await holding.getByRole('button', { name: 'Close', exact: true }).click();
      await holding.waitFor({ state: 'detached' });

      // A hold the page could not release (a crashed tab, say): reopened, the time is
      // this patient's, selected, with the countdown; not "held by another patient".
      const asha = await Api.signIn(server.url, 'patient', 67);
      const held = await asha.ok('POST', '/patient/doctors/check-slot', {
        doctor_id: 2, scheduled_at: start, hold: true,
      });
      assert.ok(held.held_until, JSON.stringify(held));
      await waitSlotState(slotAt(watching, start), 'Held by another patient', 2000);
      holding = await openBooking(a.page, 'Dr. Lukas Brandt');
      await holding.getByRole('timer').waitFor();
      await waitUntil(async () => /held for you/i.test(await nameOf(slotAt(holding, start))),
        'the resumed slot to say it is held for you');

      // Closing the dialog releases it.
      await holding.getByRole('button', { name: 'Close', exact: true }).click();
      await holding.waitFor({ state: 'detached' });
      await waitUntil(async () => (await nameOf(slotAt(watching, start))).endsWith('; available'),
        'the slot to be free once the dialog closed', 2000);
      const tomas = await Api.signIn(server.url, 'patient', 68);
      const taken = await tomas.ok('POST', '/patient/doctors/check-slot', {
        doctor_id: 2, scheduled_at: start, hold: true,
      });
      assert.ok(taken.held_until, JSON.stringify(taken));
      a.assertClean();
      b.assertClean();
    } finally {
      await a.close();
      await b.close();
    }
  });
});
