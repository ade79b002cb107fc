// Steps shared by the UI tests, by role and accessible name.

import assert from 'node:assert/strict';
import { waitUntil } from './browser.js';

export const CONFLICT =
  'This time slot was just booked by another patient. Please select a different time.';

/** Opens the booking dialog of `doctorName` from the doctors list; answers the dialog once
 * its chosen date's times are shown. (Late in a doctor's day the chosen date may have one
 * time left, held or taken by the test itself: `firstAvailable` moves on when it must.) */
export async function openBooking(page, doctorName) {
  await page.getByRole('heading', { name: 'Find a doctor', level: 1 }).waitFor();
  await page.getByRole('button', { name: `Book Appointment with ${doctorName}` }).click();
  const dialog = page.getByRole('dialog', { name: `Book an appointment with ${doctorName}` });
  await dialog.waitFor();
  await dialog.locator('[data-start]').first().waitFor();
  return dialog;
}

/** Free time buttons: their accessible name ends with "; available". */
export function available(dialog) {
  return dialog.getByRole('button', { name: /;\s*available$/ });
}

/** An accessible name with whitespace collapsed and none before punctuation (Chromium
 * puts spaces around block-level parts of a name made from content). */
export function norm(name) {
  return (name ?? '').replace(/\s+/g, ' ').replace(/ ([,;:])/g, '$1').trim();
}

/** A RegExp for `text` that tolerates such spaces, anchored at the start. */
export function loose(text) {
  const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped.replace(/([,;:]) ?/g, '\\s*$1\\s*').replace(/ /g, '\\s+')}`);
}

/** Tests run on the real clock: a slot starting this soon could turn past mid-test. */
export const MARGIN_MS = 3 * 60 * 1000;

/** The first free time that starts at least MARGIN_MS from now and is not `not`, pinned by
 * its data-start. Tests run on the real clock: late in the doctor's day the chosen date may
 * have no such time left, and then the next date with free times is chosen. */
export async function firstAvailable(dialog, not = null) {
  for (let dates = 0; dates < 3; dates += 1) {
    await dialog.locator('[data-start]').first().waitFor();
    // Usually there is one; a date whose times are all taken or held has none.
    await available(dialog).first().waitFor({ timeout: 5000 }).catch(() => {});
    for (const b of await available(dialog).all()) {
      const start = await b.getAttribute('data-start');
      if (start !== not && Date.parse(start) > Date.now() + MARGIN_MS) return slotAt(dialog, start);
    }
    if (!(await nextFreeDate(dialog))) break;
  }
  throw new Error('no free time far enough ahead on the chosen date or the next ones');
}

/** Chooses `date` in the dialog if it is not the chosen one already (another dialog's
 * `firstAvailable` may have moved on). */
export async function showDate(dialog, date) {
  if ((await selectedDay(dialog).getAttribute('data-date')) === date) return;
  await dialog.getByRole('group', { name: 'Dates' }).locator(`[data-date="${date}"]`).click();
  await waitUntil(async () => (await selectedDay(dialog).getAttribute('data-date')) === date, `the date ${date} chosen`);
}

/** Chooses the first date after the chosen one that has free times; false if none is shown. */
async function nextFreeDate(dialog) {
  const chosen = await selectedDay(dialog).getAttribute('data-date');
  const dates = dialog.getByRole('group', { name: 'Dates' }).locator('button.day-free:not([disabled])');
  for (const button of await dates.all()) {
    const date = await button.getAttribute('data-date');
    if (date > chosen) {
      await button.click();
      await waitUntil(async () => (await selectedDay(dialog).getAttribute('data-date')) === date, `the date ${date} chosen`);
      return true;
    }
  }
  return false;
}

/** The time button of a slot, by its `data-start` (the slot's UTC start). */
export function slotAt(dialog, start) {
  return dialog.locator(`[data-start="${start}"]`);
}

/** The selected date button (aria-pressed). */
export function selectedDay(dialog) {
  return dialog.getByRole('group', { name: 'Dates' }).getByRole('button', { pressed: true });
}

/** The accessible name (normalised, see `norm`). */
export async function nameOf(locator) {
  const snapshot = await locator.ariaSnapshot({ timeout: 2000 });
  let line = snapshot.split('\n')[0];
  const quoted = /^- '(.*)'$/.exec(line);
  if (quoted) line = `- ${quoted[1].replace(/''/g, "'")}`;
  const m = /^- [\w-]+ "(.*)"/.exec(line);
  return norm(m ? m[1].replace(/\\"/g, '"') : '');
}

/** Selects a free time and waits for the hold (green dot, countdown). */
export async function holdSlot(dialog, slot) {
  const start = await slot.getAttribute('data-start');
  await slot.click();
  const pinned = slotAt(dialog, start);
  await dialog.getByRole('timer').waitFor();
  await waitUntil(async () => /held for you/i.test(await nameOf(pinned)), 'the slot to say it is held for you');
  return start;
}

/** A link of the main navigation. */
export function navLink(page, name) {
  return page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name });
}

export async function fillVisit(dialog, { reason = 'Itchy rash on both forearms', symptoms, mode = 'Video' } = {}) {
  await dialog.getByLabel('Reason for visit').fill(reason);
  if (symptoms) await dialog.getByLabel('Symptoms').fill(symptoms);
  await dialog.getByRole('radio', { name: mode }).check();
}

export async function confirmAndWait(page, dialog) {
  await dialog.getByRole('button', { name: 'Confirm booking' }).click();
  await page.getByRole('heading', { name: 'Booking confirmed', level: 1 }).waitFor();
  const text = await page.getByRole('heading', { level: 2, name: /^CONS-/ }).textContent();
  assert.match(text, /^CONS-[0-9A-Z]+$/);
  return text;
}

/** Waits until `locator` is disabled and its name contains `word`. */
export async function waitSlotState(locator, word, timeout) {
  let seen = null;
  try {
    return await waitUntil(async () => {
      const disabled = await locator.isDisabled({ timeout: 1000 });
      const name = await nameOf(locator);
      seen = { disabled, name };
      return disabled && name.includes(word);
    }, `the slot to turn ${word}`, timeout);
  } catch (error) {
    error.message += ` (last seen: ${JSON.stringify(seen)})`;
    throw error;
  }
}

/** "Wed, 2 December 2026" for a civil date, computed here (not by the UI). */
export function dayName(date) {
  const t = new Date(`${date}T00:00:00Z`);
  const f = (o) => new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', ...o }).format(t);
  return `${f({ weekday: 'short' })}, ${t.getUTCDate()} ${f({ month: 'long', year: 'numeric' })}`;
}

/** The date button of a civil date: its accessible name starts with the date. */
export function dayButton(dialog, date) {
  return dialog.getByRole('group', { name: 'Dates' }).getByRole('button', { name: loose(`${dayName(date)}:`) });
}
