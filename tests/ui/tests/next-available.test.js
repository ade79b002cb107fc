// A 409 offers the doctor's next free times (`next_available`) as one-click choices: the
// time asked for is taken just as the patient picks it, the dialog shows the seed's message
// and the next three free times, and one click holds the first of them; confirming books it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { assertAccessible, launch, openPage, screenshots, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import {
  CONFLICT, confirmAndWait, fillVisit, firstAvailable, nameOf, openBooking, slotAt,
} from '../lib/ui.js';

describe('next free times on a conflict', () => {
  let server;
  let browser;
  let asha;
  let tomas;

  before(async () => {
    server = await startServer();
    browser = await launch();
    asha = await Api.signIn(server.url, 'patient', 67);
    tomas = await Api.signIn(server.url, 'patient', 68);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('the time taken as it is picked: the next three free times, one click holds one', async () => {
    const p = await openPage(browser, server.url, { bypassCSP: true });
    const { page } = p;
    p.allow(/status of 409/);
    let failed = 'next-available';
    try {
      await signInUI(page, 'patient');
      const dialog = await openBooking(page, 'Dr. Lukas Brandt');
      const slot = await firstAvailable(dialog);
      const start = await slot.getAttribute('data-start');

      // Another patient books that very time just as this one picks it.
      let raced = false;
      await page.route('**/patient/doctors/check-slot', async (route) => {
        if (!raced) {
          raced = true;
          const other = await tomas.book(2, start);
          assert.equal(other.status, 201);
        }
        await route.continue();
      });
      await slot.click();
      await dialog.getByText(CONFLICT).waitFor();
      const choices = dialog.getByRole('group', { name: 'Next free times' });
      await choices.waitFor();
      const buttons = choices.getByRole('button', { name: /^Choose / });
      await waitUntil(async () => (await buttons.count()) === 3, 'three next free times');

      // They are the API's next free times after the one taken, in order.
      const a = await asha.availability(2, 14);
      const expected = a.days.flatMap((d) => d.slots)
        .filter((s) => s.status === 'available' && Date.parse(s.start) > Date.parse(start))
        .slice(0, 3)
        .map((s) => s.start);
      const firstName = await nameOf(buttons.first());
      assert.match(firstName, /^Choose \d{2}:\d{2} /);
      await assertAccessible(page, 'booking dialog with next free times');
      await screenshots(page, 'booking-next-free', {
        fullPage: false,
        prepare: () => choices.scrollIntoViewIfNeeded(),
      });

      // One click (by keyboard) holds the first.
      await buttons.first().focus();
      await page.keyboard.press('Enter');
      await dialog.getByRole('timer').waitFor();
      const chosen = slotAt(dialog, expected[0]);
      await waitUntil(async () => /held for you/i.test(await nameOf(chosen)), 'the first next time to be held for this patient');

      await fillVisit(dialog, { reason: 'Follow-up after the taken time' });
      await confirmAndWait(page, dialog);
      const mine = await asha.consultations();
      assert.equal(mine.length, 1);
      assert.equal(Date.parse(mine[0].scheduled_at), Date.parse(expected[0]));
      p.assertClean();
      failed = null;
    } finally {
      await p.close(failed);
    }
  });
});
