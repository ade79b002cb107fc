// A booking for several patients: "Add another patient" keeps a visit and clears the form
// for the next one, with the same doctor or another; Confirm books them all at once (one
// multi-patient booking); a refused visit is marked and nothing is booked.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { assertAccessible, launch, openPage, screenshots, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import { fillVisit, firstAvailable, holdSlot, openBooking } from '../lib/ui.js';

/** Another free time far enough ahead than `not` (it may be in a visit already). */
async function anotherAvailable(dialog, not) {
  return firstAvailable(dialog, not);
}

describe('a booking for several patients', () => {
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

  test('three visits, two doctors: added one by one, booked together, listed with who they are for', async () => {
    // The CSP would refuse the injected axe script: this context bypasses it.
    const p = await openPage(browser, server.url, { bypassCSP: true });
    const { page } = p;
    try {
      await signInUI(page, 'patient');
      let dialog = await openBooking(page, 'Dr. Kenji Watanabe');
      // The first visit: the signed-in patient, prefilled.
      assert.equal(await dialog.getByLabel("Patient's name").inputValue(), 'Asha Patel');
      assert.equal(await dialog.getByLabel('Relation to you').inputValue(), 'self');
      const first = await holdSlot(dialog, await firstAvailable(dialog));
      await fillVisit(dialog, { reason: 'Annual check-up', mode: 'Video' });
      await dialog.getByRole('button', { name: 'Add another patient' }).click();
      const visits = dialog.getByRole('list', { name: /Visits in this booking/ });
      await visits.waitFor();
      assert.equal(await visits.getByRole('listitem').count(), 1);
      // The form is clear for the next patient, whose name is asked for.
      assert.equal(await dialog.getByLabel("Patient's name").inputValue(), '');
      assert.equal(await dialog.getByLabel('Reason for visit').inputValue(), '');
      await dialog.getByRole('button', { name: 'Confirm 1 booking' }).waitFor();

      // The second visit, same doctor, a child.
      const second = await holdSlot(dialog, await anotherAvailable(dialog, first));
      await dialog.getByLabel("Patient's name").fill('Ravi Patel');
      await dialog.getByLabel('Relation to you').selectOption('child');
      await fillVisit(dialog, { reason: 'Ear infection', mode: 'Chat' });
      await dialog.getByRole('button', { name: 'Add another patient' }).click();
      await waitUntil(async () => (await visits.getByRole('listitem').count()) === 2, 'two visits');

      // The third visit with another doctor: the visits stay when the dialog changes.
      await dialog.getByRole('button', { name: 'Close' }).click();
      await dialog.waitFor({ state: 'detached' });
      dialog = await openBooking(page, 'Dr. Amara Okafor');
      const again = dialog.getByRole('list', { name: /Visits in this booking/ });
      assert.equal(await again.getByRole('listitem').count(), 2);
      const third = await holdSlot(dialog, await firstAvailable(dialog));
      await dialog.getByLabel("Patient's name").fill('Meera Patel');
      await dialog.getByLabel('Relation to you').selectOption('parent');
      await fillVisit(dialog, { reason: 'Blood pressure review', mode: 'Voice' });
      await assertAccessible(page, 'booking dialog with visits');
      await screenshots(page, 'family-booking', {
        fullPage: false,
        prepare: () => dialog.getByRole('heading', { name: /Visits in this booking/ }).scrollIntoViewIfNeeded(),
      });
      await dialog.getByRole('button', { name: 'Confirm 3 bookings' }).click();

      await page.getByRole('heading', { name: 'My consultations', level: 1 }).waitFor();
      await page.getByText('Booking confirmed: 3 consultations.').waitFor();
      const mine = (await asha.consultations()).filter((c) => c.booking_id !== null);
      assert.equal(mine.length, 3);
      assert.equal(new Set(mine.map((c) => c.booking_id)).size, 1, 'one booking');
      const by = Object.fromEntries(mine.map((c) => [c.patient_name, c]));
      assert.equal(Date.parse(by['Asha Patel'].scheduled_at), Date.parse(first));
      assert.equal(by['Asha Patel'].relation, 'self');
      assert.equal(Date.parse(by['Ravi Patel'].scheduled_at), Date.parse(second));
      assert.equal(by['Ravi Patel'].consult_mode, 'chat');
      assert.equal(by['Ravi Patel'].reason, 'Ear infection');
      assert.equal(Date.parse(by['Meera Patel'].scheduled_at), Date.parse(third));
      assert.equal(by['Meera Patel'].relation, 'parent');
      await page.getByText('Ravi Patel (Child)').first().waitFor();
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('a visit whose time was taken meanwhile is marked; nothing is booked until it is removed', async () => {
    const p = await openPage(browser, server.url);
    const { page } = p;
    p.allow(/status of 409/);
    try {
      await signInUI(page, 'patient', 'Tomás Reyes (patient 68)');
      const dialog = await openBooking(page, 'Dr. Lukas Brandt');
      const first = await holdSlot(dialog, await firstAvailable(dialog));
      await dialog.getByLabel("Patient's name").fill('Lucía Reyes');
      await dialog.getByLabel('Relation to you').selectOption('child');
      await fillVisit(dialog, { reason: 'Cough' });
      await dialog.getByRole('button', { name: 'Add another patient' }).click();
      // Its hold runs out early here: another patient takes the time meanwhile.
      await tomas.call('DELETE', '/patient/doctors/2/hold');
      const taken = await asha.book(2, first);
      assert.equal(taken.status, 201, taken.text);

      await holdSlot(dialog, await anotherAvailable(dialog, first));
      await dialog.getByLabel("Patient's name").fill('Tomás Reyes');
      await dialog.getByLabel('Relation to you').selectOption('self');
      await fillVisit(dialog, { reason: 'Back pain' });
      await dialog.getByRole('button', { name: 'Confirm 2 bookings' }).click();
      const visits = dialog.getByRole('list', { name: /Visits in this booking/ });
      await visits.getByRole('alert').filter({ hasText: 'This time was just taken' }).waitFor();
      await dialog.getByText('One visit could not be booked, so none was.').waitFor();
      assert.equal((await tomas.consultations()).length, 0, 'nothing booked');
      assert.equal(await dialog.getByLabel('Reason for visit').inputValue(), 'Back pain', 'the form is kept');

      await visits.getByRole('button', { name: "Remove Lucía Reyes's visit" }).click();
      await dialog.getByRole('button', { name: 'Confirm booking' }).click();
      await page.getByRole('heading', { name: 'Booking confirmed', level: 1 }).waitFor();
      const mine = await tomas.consultations();
      assert.equal(mine.length, 1);
      assert.equal(mine[0].reason, 'Back pain');
      p.assertClean();
    } finally {
      await p.close();
    }
  });
});
