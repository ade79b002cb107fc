// Holds that run out (CONSULT__ENGINE__HOLD_TTL_S=3) and the seed's 409: from the
// confirm, and from the live stream while the form is being filled.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { focused, launch, openPage, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import {
  CONFLICT, fillVisit, firstAvailable, holdSlot, nameOf, openBooking, waitSlotState,
} from '../lib/ui.js';

const HOLD_TTL_S = 3;

describe('conflicts after a short hold', () => {
  let server;
  let browser;
  let asha;
  let tomas;

  before(async () => {
    server = await startServer({ CONSULT__ENGINE__HOLD_TTL_S: String(HOLD_TTL_S) });
    browser = await launch();
    asha = await Api.signIn(server.url, 'patient', 67);
    tomas = await Api.signIn(server.url, 'patient', 68);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** Holds the first free time, fills the form, and waits (the real timer) for the hold to run out. */
  async function heldThenExpired(page, doctorName) {
    const dialog = await openBooking(page, doctorName);
    const slot = await firstAvailable(dialog);
    const start = await slot.getAttribute('data-start');
    await holdSlot(dialog, slot);
    await fillVisit(dialog, { reason: 'Migraine', symptoms: 'Headache and light sensitivity since Monday', mode: 'Chat' });
    await dialog.getByText(/Your hold on .* has ended/).waitFor({ timeout: (HOLD_TTL_S + 5) * 1000 });
    await dialog.getByRole('timer').waitFor({ state: 'detached' });
    return { dialog, start, slot: dialog.locator(`[data-start="${start}"]`) };
  }

  async function assertFormKept(dialog) {
    assert.equal(await dialog.getByLabel('Reason for visit').inputValue(), 'Migraine');
    assert.equal(await dialog.getByLabel('Symptoms').inputValue(), 'Headache and light sensitivity since Monday');
    assert.ok(await dialog.getByRole('radio', { name: 'Chat' }).isChecked());
  }

  test('409 on confirm: the seed\'s message, the slot turns Booked, selection cleared, form kept', async () => {
    const p = await openPage(browser, server.url);
    const { page } = p;
    p.allow(/status of 409/);
    let failed = 'conflict-409';
    try {
      await signInUI(page, 'patient');
      const { dialog, start, slot } = await heldThenExpired(page, 'Dr. Lukas Brandt');
      // The hold ended and was not renewed: the server shows the slot free again.
      await waitUntil(async () => (await asha.slotStatus(2, start)) === 'available', 'the hold to be released');
      await waitUntil(() => slot.isEnabled(), 'the slot to stay pickable for this patient');
      assert.match(await nameOf(slot), /Selected, not held/);

      // Another patient books that very slot just as this one confirms.
      await page.route('**/patient/doctors/book', async (route) => {
        const other = await tomas.book(2, start);
        assert.equal(other.status, 201);
        await route.continue();
      });
      await dialog.getByRole('button', { name: 'Confirm booking' }).click();
      await dialog.getByText(CONFLICT).waitFor();
      await dialog.getByText('Please pick another time below; what you typed is kept.').waitFor();
      await waitSlotState(slot, 'Booked');
      await slot.getByText('Booked').waitFor();
      assert.match(await focused(page), /heading "2\. Choose a time"/);
      assert.equal(await dialog.getByText('No time selected yet.').count(), 1);
      await assertFormKept(dialog);
      assert.equal((await asha.consultations()).length, 0, 'nothing booked for this patient');
      p.assertClean();
      failed = null;
    } finally {
      await p.close(failed);
    }
  });

  test('the selected time booked elsewhere: the same message arrives live, with no click', async () => {
    const p = await openPage(browser, server.url);
    const { page } = p;
    try {
      await signInUI(page, 'patient');
      const { dialog, start, slot } = await heldThenExpired(page, 'Dr. Amara Okafor');
      await waitUntil(async () => (await asha.slotStatus(3, start)) === 'available', 'the hold to be released');
      // No renewal by itself: still free a moment later (the hold timer is the point here).
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await asha.slotStatus(3, start), 'available');

      const other = await tomas.book(3, start);
      assert.equal(other.status, 201);
      await dialog.getByText(CONFLICT).waitFor({ timeout: 2000 });
      await waitSlotState(slot, 'Booked', 2000);
      await assertFormKept(dialog);

      // Refresh keeps it Booked.
      await dialog.getByRole('button', { name: 'Refresh' }).click();
      await waitSlotState(slot, 'Booked');
      assert.match(await nameOf(slot), /Booked$/);
      p.assertClean();
    } finally {
      await p.close();
    }
  });
});
