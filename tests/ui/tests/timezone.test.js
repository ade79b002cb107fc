// A browser in America/New_York booking the Kolkata doctor (Dr. Meera Iyer, doctor 1):
// both times right, computed here from each slot's data-start (and checked against the
// API's local_time); closed and past days cannot be picked, not even through the URL.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { launch, openPage, signInUI, waitUntil } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import {
  confirmAndWait, dayButton, fillVisit, holdSlot, MARGIN_MS, nameOf, openBooking, selectedDay, slotAt,
} from '../lib/ui.js';

const BROWSER_ZONE = 'America/New_York';
const DOCTOR_ZONE = 'Asia/Kolkata';

const hhmm = (start, zone) => new Intl.DateTimeFormat('en-US', {
  timeZone: zone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
}).format(new Date(start));

const civilDate = (start, zone) => new Intl.DateTimeFormat('en-CA', {
  timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit',
}).format(new Date(start));

const addDays = (date, n) => {
  const t = new Date(`${date}T00:00:00Z`);
  t.setUTCDate(t.getUTCDate() + n);
  return t.toISOString().slice(0, 10);
};

const weekday = (date) => new Date(`${date}T00:00:00Z`).getUTCDay(); // 0 = Sunday

describe('timezones and days', () => {
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

  test('New York browser, Kolkata doctor: both times right on every slot and on the confirmation', async () => {
    const p = await openPage(browser, server.url, { timezoneId: BROWSER_ZONE });
    const { page } = p;
    try {
      await signInUI(page, 'patient');
      assert.equal(await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone), BROWSER_ZONE);
      const dialog = await openBooking(page, 'Dr. Meera Iyer');
      const date = await selectedDay(dialog).getAttribute('data-date');
      const api = await asha.availability(1, 7, date);
      const day = api.days.find((d) => d.date === date);
      assert.ok(day.slots.length > 0);
      let differentDate = 0;
      for (const s of day.slots) {
        const slot = slotAt(dialog, s.start);
        const start = await slot.getAttribute('data-start');
        const mine = hhmm(start, BROWSER_ZONE);
        const theirs = hhmm(start, DOCTOR_ZONE);
        assert.equal(theirs, s.local_time, 'the doctor\'s local time agrees with the API');
        const name = await nameOf(slot);
        assert.ok(name.startsWith(`${mine} ${BROWSER_ZONE}`), `"${name}" starts with ${mine} ${BROWSER_ZONE}`);
        assert.ok(name.includes(`doctor: ${theirs} ${DOCTOR_ZONE}`), `"${name}" has the doctor's ${theirs}`);
        const text = await slot.innerText();
        for (const part of [mine, BROWSER_ZONE, theirs, DOCTOR_ZONE]) assert.ok(text.includes(part), `"${text}" shows ${part}`);
        if (civilDate(start, BROWSER_ZONE) !== date) differentDate += 1;
      }
      // Kolkata is 10.5 h ahead of New York: the morning slots fall on the previous US day.
      assert.ok(differentDate > 0, 'some slots fall on another date in New York');

      // Book one and read both zones on the confirmation.
      const first = day.slots.find((s) => s.status === 'available' && Date.parse(s.start) > Date.now() + MARGIN_MS);
      await holdSlot(dialog, slotAt(dialog, first.start));
      await fillVisit(dialog, { mode: 'Voice' });
      await confirmAndWait(page, dialog);
      const when = page.getByRole('definition');
      await when.filter({ hasText: `${hhmm(first.start, BROWSER_ZONE)} ${BROWSER_ZONE}` }).first().waitFor();
      await when.filter({ hasText: `${hhmm(first.start, DOCTOR_ZONE)} ${DOCTOR_ZONE}` }).first().waitFor();
      p.assertClean();
    } finally {
      await p.close();
    }
  });

  test('closed days and past days cannot be picked, not even from the URL', async () => {
    const p = await openPage(browser, server.url, { timezoneId: BROWSER_ZONE });
    const { page } = p;
    try {
      await signInUI(page, 'patient', 'Tomás Reyes (patient 68)');
      const dialog = await openBooking(page, 'Dr. Meera Iyer');
      const chosen = await selectedDay(dialog).getAttribute('data-date');
      const today = civilDate(Date.now(), DOCTOR_ZONE);
      const dates = Array.from({ length: 14 }, (_, i) => addDays(today, i - ((weekday(today) + 6) % 7)));

      // Dr. Iyer does not work on Sundays: every Sunday shown is disabled and says closed.
      const sundays = dates.filter((d) => weekday(d) === 0 && d >= today);
      assert.ok(sundays.length >= 1);
      for (const d of sundays) {
        const b = dayButton(dialog, d);
        assert.ok(await b.isDisabled(), `${d} is disabled`);
        assert.match(await nameOf(b), /: closed$/);
      }
      // Days before today are disabled and say past; nothing earlier can be reached.
      for (const d of dates.filter((x) => x < today)) {
        const b = dayButton(dialog, d);
        assert.ok(await b.isDisabled(), `${d} is disabled`);
        assert.match(await nameOf(b), /: past$/);
      }
      assert.ok(await dialog.getByRole('button', { name: /Earlier dates/ }).isDisabled());

      // A forced click on a closed day changes nothing.
      await dayButton(dialog, sundays[0]).click({ force: true });
      assert.equal(await selectedDay(dialog).getAttribute('data-date'), chosen);

      // Nor does a URL naming a closed day or a past day.
      for (const bad of [sundays[0], addDays(today, -1)]) {
        await page.goto(`/#/doctors/1/${bad}`);
        await page.reload();
        const again = page.getByRole('dialog', { name: /Dr\. Meera Iyer/ });
        await again.waitFor();
        await waitUntil(async () => (await selectedDay(again).count()) === 1, 'a date to be selected');
        const picked = await selectedDay(again).getAttribute('data-date');
        assert.notEqual(picked, bad);
        assert.equal(picked, chosen, 'it opens on the first date with a free slot instead');
      }
      p.assertClean();
    } finally {
      await p.close();
    }
  });
});
