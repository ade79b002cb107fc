// Live slot updates across two browser contexts on one doctor: a hold shows as held, a
// booking turns the slot Booked, a cancellation frees it: within 2 s, with no click.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { launch, openPage, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import {
  confirmAndWait, fillVisit, firstAvailable, holdSlot, nameOf, openBooking, selectedDay, slotAt,
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
});
