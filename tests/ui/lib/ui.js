// Steps shared by the UI tests, by role and accessible name.

import assert from 'node:assert/strict';
import { waitUntil } from './browser.js';

export const CONFLICT =
  'This time slot was just booked by another patient. Please select a different time.';

/** Opens the booking dialog of `doctorName` from the doctors list; answers the dialog. */
export async function openBooking(page, doctorName) {
  await page.getByRole('heading', { name: 'Find a doctor', level: 1 }).waitFor();
  await page.getByRole('button', { name: `Book Appointment with ${doctorName}` }).click();
  const dialog = page.getByRole('dialog', { name: `Book an appointment with ${doctorName}` });
  await dialog.waitFor();
  await available(dialog).first().waitFor();
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

/** The first free time that starts at least MARGIN_MS from now, pinned by its data-start. */
export async function firstAvailable(dialog) {
  await available(dialog).first().waitFor();
  for (const b of await available(dialog).all()) {
    const start = await b.getAttribute('data-start');
    if (Date.parse(start) > Date.now() + MARGIN_MS) return slotAt(dialog, start);
  }
  throw new Error('no free time far enough ahead on the chosen date');
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
