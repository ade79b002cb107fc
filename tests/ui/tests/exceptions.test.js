// Schedule exceptions end to end: the doctor adds a break and a closed date in the
// schedule editor (by keyboard-reachable, labelled inputs), and the patient's booking
// dialog no longer offers those times. The editor with its new rows is scanned by axe,
// fits 360 px and is saved as screenshots.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Api } from '../lib/api.js';
import { assertAccessible, focused, launch, openPage, screenshots, signInUI } from '../lib/browser.js';
import { startServer } from '../lib/server.js';
import { available, dayButton, nameOf, openBooking, slotAt } from '../lib/ui.js';

const WEEKDAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const DOCTOR = 2;

function plusMinutes(hhmm, minutes) {
  const total = Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5)) + minutes;
  return `${String(Math.floor(total / 60)).padStart(2, '0')}:${String(total % 60).padStart(2, '0')}`;
}

/** Nothing on the page is wider than 360 px. */
async function assertFits(page, what) {
  await page.setViewportSize({ width: 360, height: 780 });
  const overflow = await page.evaluate(() => {
    const limit = document.documentElement.clientWidth;
    const wide = [...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > limit + 1 && getComputedStyle(el).position !== 'fixed')
      .map((el) => el.tagName.toLowerCase());
    return { scroll: document.documentElement.scrollWidth, limit, wide: wide.slice(0, 5) };
  });
  assert.ok(overflow.scroll <= overflow.limit && overflow.wide.length === 0,
    `${what} overflows 360 px: ${JSON.stringify(overflow)}`);
  await page.setViewportSize({ width: 1280, height: 900 });
}

describe('schedule exceptions', () => {
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

  test('a break and a closed date added by the doctor are not offered to the patient', async () => {
    const a = await asha.availability(DOCTOR, 21);
    const slotMinutes = a.slot_minutes;
    // A free time that is not the day's last (its break must end inside the day).
    const free = a.days.flatMap((d) => d.slots.map((s, i) => ({ ...s, date: d.date, last: i === d.slots.length - 1 })))
      .filter((s) => s.status === 'available' && !s.last && Date.parse(s.start) > Date.now() + 3 * 60 * 1000);
    const target = free[0];
    assert.ok(target, 'a free time to put a break on');
    const dayName = WEEKDAY_NAMES[new Date(`${target.date}T00:00:00Z`).getUTCDay()];
    const closedDate = a.days.find((d) => d.date > target.date && d.slots.some((s) => s.status === 'available')).date;
    const breakStart = target.local_time;
    const breakEnd = plusMinutes(breakStart, slotMinutes);

    const doc = await openPage(browser, server.url, { bypassCSP: true });
    const pat = await openPage(browser, server.url);
    try {
      const page = doc.page;
      await signInUI(page, 'doctor', 'Dr. Lukas Brandt, General Practice');
      await page.getByRole('heading', { name: 'Weekly schedule' }).waitFor();

      // A break on the target's weekday; the new start field takes the focus.
      await page.getByRole('button', { name: `Add break on ${dayName}` }).click();
      assert.match(await focused(page), new RegExp(`${dayName} break 1 start`));
      await page.getByLabel(`${dayName} break 1 start`).fill(breakStart);
      await page.getByLabel(`${dayName} break 1 end`).fill(breakEnd);

      // A closed date, entered by keyboard.
      await page.getByRole('button', { name: 'Add date' }).press('Enter');
      const date = page.getByLabel('Date 1', { exact: true });
      assert.match(await focused(page), /Date 1/);
      await date.fill(closedDate);
      assert.equal(await page.getByLabel('Date 1 hours').inputValue(), 'closed');
      assert.ok(await page.getByLabel('Date 1 start').isDisabled());

      // Booking rules: a cap well above what the test books.
      await page.getByLabel('Most consultations per day').fill('40');

      await page.getByRole('button', { name: 'Save schedule' }).click();
      await page.getByText(/Schedule saved/).waitFor();

      const saved = (await asha.availability(DOCTOR, 21));
      assert.deepEqual(saved.availability_schedule[dayName.toLowerCase()].breaks, [{ start: breakStart, end: breakEnd }]);
      assert.equal(saved.date_overrides[closedDate].enabled, false);
      assert.equal(saved.policy.max_per_day, 40);

      // The editor with its new rows: accessible, fits 360 px, screenshots.
      await assertAccessible(page, 'doctor schedule with exceptions');
      await assertFits(page, 'doctor schedule with exceptions');
      await screenshots(page, 'doctor-exceptions', {
        prepare: () => page.getByRole('button', { name: 'Add date' }).scrollIntoViewIfNeeded(),
      });

      // The patient: the break's time is gone from its date, the closed date is closed.
      await signInUI(pat.page, 'patient');
      const dialog = await openBooking(pat.page, 'Dr. Lukas Brandt');
      const closed = dayButton(dialog, closedDate);
      assert.ok(await closed.isDisabled());
      assert.match(await nameOf(closed), /: closed$/);
      const day = dayButton(dialog, target.date);
      await day.click();
      await available(dialog).first().waitFor();
      assert.equal(await slotAt(dialog, target.start).count(), 0, 'the break time is not offered');
      for (const b of await available(dialog).all()) {
        assert.notEqual(await b.getAttribute('data-start'), target.start);
      }

      // Reloading the doctor's screen shows what was saved.
      await page.reload();
      await page.getByLabel(`${dayName} break 1 start`).waitFor();
      assert.equal(await page.getByLabel(`${dayName} break 1 start`).inputValue(), breakStart);
      assert.equal(await page.getByLabel('Date 1', { exact: true }).inputValue(), closedDate);
      assert.equal(await page.getByLabel('Most consultations per day').inputValue(), '40');
      doc.assertClean();
      pat.assertClean();
    } finally {
      await doc.close();
      await pat.close();
    }
  });
});
