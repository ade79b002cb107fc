// The booking dialog: pick a date (the doctor's calendar), pick a time (held for the
// patient at once, with a countdown), tell the doctor about the visit, choose Voice,
// Video or Chat, and confirm. The slot grid follows the availability stream live.
// With `reschedule` (a consultation) the same picker moves that consultation instead:
// no form, its current time marked, "Move consultation".

import { ApiError, CONFLICT_MESSAGE, MEDICAL_LIMITS } from '../api.js';
import { h, hidden, message, replace, uid } from '../dom.js';
import { icon, MODES } from '../icons.js';
import { subscribe } from '../sse.js';
import {
  addVisit, clearVisits, markVisit, MAX_VISITS, NAME_LIMIT, onVisitsChange, pendingVisits,
  RELATIONS, renderVisits, toItem,
} from './family.js';
import {
  addDays, browserZone, countdown, dateIn, dateParts, daysBetween, longDate, mondayOf,
  shortDateIn, timeIn, todayIn,
} from '../time.js';

const WINDOW_DAYS = 14;
/** The API's longest availability range, so the farthest bookable date is today + 61. */
const MAX_DAYS = 62;

const FIELDS = [
  { name: 'reason', label: 'Reason for visit', rows: 2, required: true,
    hint: 'What would you like help with?' },
  { name: 'symptoms', label: 'Symptoms', rows: 3, hint: 'What you feel, and since when.' },
  { name: 'medical_history', label: 'Medical history', rows: 3,
    hint: 'Past conditions, operations, pregnancies.' },
  { name: 'allergies', label: 'Allergies', rows: 2, hint: 'Medicines, foods, other.' },
  { name: 'current_medications', label: 'Current medications', rows: 2,
    hint: 'Name and dose of what you take.' },
];

/**
 * Opens the dialog for `doctor` (on `date` if it can be picked, else on the first date
 * with a free time). Answers `{close()}`.
 */
export function openBooking({
  ctx, doctor, date: wantedDate, opener, onDateChange = () => {}, onClose = () => {}, onBooked,
  reschedule = null,
}) {
  const zone = browserZone();
  const doctorZone = doctor.timezone;
  const zonesDiffer = zone !== doctorZone;
  const today = todayIn(doctorZone);
  const lastDate = addDays(today, MAX_DAYS - 1);
  const abort = new AbortController();

  const state = {
    windowStart: mondayOf(today),
    days: new Map(), // date -> {date, enabled, slots}
    loaded: false,
    loadSeq: 0,
    date: null,
    selected: null, // {start, pending, held, heldUntil, expired}
    myHolds: new Map(), // start ms -> held-until ms: this patient's earlier holds, still running
    yourHold: null, // availability's `your_hold`: a hold this patient placed before a reload
    holdTimer: null,
    expiryReload: null,
    inFlight: false,
    lastAttempt: null, // {key, fingerprint} of a booking whose answer was 429/503/500/none
    retryTimer: null,
    closed: false,
    live: null,
    holdKey: '',
  };

  // ---- the dialog's parts ----
  const titleId = uid('booking-title');
  const timesHeadingId = uid('times-title');
  const closeButton = h('button', {
    type: 'button', class: 'btn-icon', 'aria-label': 'Close', onclick: () => close(),
  }, icon('close'));
  const rangeLabel = h('p', { class: 'range-label', 'aria-live': 'polite' });
  const earlier = h('button', { type: 'button', class: 'btn btn-quiet', onclick: () => shiftWindow(-1) },
    h('span', { 'aria-hidden': 'true' }, '‹ '), 'Earlier', h('span', { class: 'narrow-hide' }, ' dates'));
  const later = h('button', { type: 'button', class: 'btn btn-quiet', onclick: () => shiftWindow(1) },
    'Later', h('span', { class: 'narrow-hide' }, ' dates'), h('span', { 'aria-hidden': 'true' }, ' ›'));
  const dayGrid = h('div', { class: 'day-grid', role: 'group', 'aria-label': 'Dates' });
  const timesHeading = h('h3', { id: timesHeadingId, tabindex: '-1' }, '2. Choose a time');
  const dayTitle = h('p', { class: 'day-title' });
  const liveState = h('p', { class: 'live-state' }, h('span', { class: 'live-dot', 'aria-hidden': 'true' }), 'Connecting to live updates…');
  const refreshButton = h('button', {
    type: 'button', class: 'btn btn-quiet', onclick: () => reload({ announceDone: true }),
  }, icon('refresh'), 'Refresh');
  const slotNotice = h('div', { class: 'slot-notice' });
  const slotList = h('div', { class: 'slot-grid', role: 'group', 'aria-labelledby': timesHeadingId });
  const holdBox = h('div', { class: 'hold-box' });
  const timeError = h('p', { class: 'field-error', id: uid('time-error') });

  const fields = new Map();
  const formNotice = h('div', { class: 'form-notice' });
  const summary = h('p', { class: 'summary', 'aria-live': 'polite' });
  const confirmLabel = reschedule ? 'Move consultation' : 'Confirm booking';
  const confirmButton = h('button', { type: 'submit', class: 'btn btn-primary btn-large' }, confirmLabel);
  // Who the visit is for: the signed-in patient, or a family member (then, or with other
  // visits added, the booking goes as one multi-patient booking).
  const visitsBox = h('section', { class: 'visits', id: uid('visits'), 'aria-live': 'polite' });
  const nameId = uid('patient-name');
  const nameError = h('p', { class: 'field-error', id: `${nameId}-error` });
  const nameInput = h('input', {
    type: 'text', id: nameId, name: 'patient_name', maxlength: NAME_LIMIT, autocomplete: 'name',
    required: true, value: ctx.session?.name ?? '', 'aria-describedby': nameError.id,
    oninput: () => { clearFieldError('patient_name'); renderSummary(); },
  });
  const relationId = uid('relation');
  const relationSelect = h('select', {
    id: relationId, name: 'relation', onchange: () => renderSummary(),
  }, RELATIONS.map((r) => h('option', { value: r.value }, r.label)));
  const addButton = h('button', {
    type: 'button', class: 'btn btn-quiet', onclick: () => addAnother(),
  }, icon('plus'), 'Add another patient');
  const stopVisits = reschedule ? () => {} : onVisitsChange(() => {
    renderVisits(visitsBox, zone);
    renderSummary();
  });
  const retryNote = h('p', { class: 'retry-note', 'aria-live': 'polite' });
  const modeHelpId = uid('mode-help');
  const modeError = h('p', { class: 'field-error', id: uid('mode-error') });
  const modeRadios = MODES.map((mode) => {
    const id = uid(`mode-${mode.value}`);
    const hintId = uid(`mode-${mode.value}-hint`);
    const input = h('input', {
      type: 'radio', name: 'consult_mode', value: mode.value, id,
      'aria-describedby': `${hintId} ${modeHelpId}`,
      onchange: () => { clearFieldError('consult_mode'); renderSummary(); },
    });
    return {
      input,
      el: h('div', { class: 'mode-option' },
        input,
        h('label', { for: id },
          icon(mode.value),
          h('span', { class: 'mode-name' }, mode.label),
          h('span', { class: 'mode-hint', id: hintId, 'aria-hidden': 'true' }, mode.hint))),
    };
  });

  const currentTime = reschedule
    ? `${shortDateIn(reschedule.scheduled_at, zone)}, ${timeIn(reschedule.scheduled_at, zone)} ${zone}`
      + (zonesDiffer ? ` (${timeIn(reschedule.scheduled_at, doctorZone)} ${doctorZone} for the doctor)` : '')
    : '';
  const form = reschedule ? h('form', { class: 'booking-form', novalidate: true, onsubmit: submit },
    h('h3', {}, '3. Move it'),
    h('p', {}, h('strong', {}, `${reschedule.reference} is booked for ${currentTime}.`)),
    h('p', { class: 'muted' },
      'Choose a new time. What you told the doctor, the way you consult and the join details stay as they are; the doctor is told.'),
    holdBox,
    summary,
    formNotice,
    h('div', { class: 'confirm-row' }, confirmButton, retryNote)) : h('form', { class: 'booking-form', novalidate: true, onsubmit: submit },
    visitsBox,
    h('fieldset', { class: 'visit-for' },
      h('legend', {}, '3. Who is the visit for?'),
      h('div', { class: 'visit-for-fields' },
        h('div', { class: 'field' },
          h('label', { for: nameId }, "Patient's name", h('span', { class: 'req' }, ' (required)')),
          nameInput,
          nameError),
        h('div', { class: 'field' },
          h('label', { for: relationId }, 'Relation to you'),
          relationSelect))),
    h('h3', {}, 'About the visit'),
    h('p', { class: 'muted' }, 'Only the doctor sees this. Keep it short; you can say more in the consultation.'),
    FIELDS.map(field),
    h('fieldset', { class: 'modes', 'aria-describedby': modeError.id },
      h('legend', {}, '4. How would you like to consult? ', h('span', { class: 'req' }, '(required)')),
      h('p', { id: modeHelpId, class: 'muted' },
        'All three take place in this app, on this page: no WhatsApp or other app needed.'),
      h('div', { class: 'mode-options' }, modeRadios.map((m) => m.el)),
      modeError),
    holdBox,
    summary,
    formNotice,
    h('div', { class: 'confirm-row' }, confirmButton, addButton, retryNote));

  const dialog = h('dialog', { class: 'booking', 'aria-labelledby': titleId },
    h('div', { class: 'dialog-head' },
      h('div', {},
        h('h2', { id: titleId },
          reschedule ? `Reschedule your appointment with ${doctor.name}` : `Book an appointment with ${doctor.name}`),
        h('p', { class: 'muted' },
          `${doctor.specialty} · ${doctor.slot_minutes} minutes · ${doctorZone}`)),
      closeButton),
    h('div', { class: 'dialog-body' },
      h('section', { class: 'pick', 'aria-label': 'Date and time' },
        h('h3', {}, '1. Choose a date'),
        zonesDiffer
          ? h('p', { class: 'muted' }, `Dates follow the doctor's calendar (${doctorZone}). Times are shown in your timezone (${zone}) and the doctor's.`)
          : h('p', { class: 'muted' }, `Times are in ${zone}, your timezone and the doctor's.`),
        h('div', { class: 'range-nav' }, earlier, rangeLabel, later),
        dayGrid,
        h('div', { class: 'times-head' }, timesHeading, refreshButton),
        dayTitle,
        message('info',
          'Times update live, so you never pick one that is already taken. ',
          'A time you select is held for you for a few minutes while you fill in the form.'),
        liveState,
        slotNotice,
        slotList,
        timeError),
      form));

  dialog.addEventListener('close', onDialogClose);
  document.body.append(dialog);
  dialog.showModal();
  if (!reschedule) renderVisits(visitsBox, zone);
  renderSummary();
  start();

  /** Changes a text only when it differs (live regions announce every change). */
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  // ---- loading ----
  async function start() {
    const wantedOk = wantedDate && wantedDate >= today && wantedDate <= lastDate;
    if (wantedOk) state.windowStart = mondayOf(wantedDate);
    await loadWindow();
    if (state.closed) return;
    if (resumeHold()) {
      // A hold placed before a reload: the same time, still held, with its countdown.
    } else if (wantedOk && pickable(wantedDate)) {
      selectDate(wantedDate, { focus: true });
    } else {
      // The first date with a free time, looking ahead window by window.
      for (;;) {
        const free = firstFreeDate();
        if (free) {
          selectDate(free, { focus: true });
          break;
        }
        const next = addDays(state.windowStart, WINDOW_DAYS);
        if (next > lastDate) {
          state.windowStart = mondayOf(today);
          await loadWindow();
          const any = windowDates().find(pickable);
          selectDate(any ?? null, { focus: true });
          replace(slotNotice, message('warning', `${doctor.name} has no free times in the next ${MAX_DAYS} days.`));
          break;
        }
        state.windowStart = next;
        await loadWindow();
        if (state.closed) return;
      }
    }
    openStream();
    state.pastTimer = setInterval(markPast, 30000);
  }

  /** Times that started meanwhile turn past without a reload. */
  function markPast() {
    const now = Date.now();
    let changed = false;
    for (const day of state.days.values()) {
      for (const slot of day.slots) {
        if (slot.status !== 'past' && Date.parse(slot.start) <= now) {
          slot.status = 'past';
          changed = true;
        }
      }
    }
    if (!changed) return;
    renderDays();
    renderSlots();
    checkSelectedStillOurs();
  }

  function windowDates() {
    return Array.from({ length: WINDOW_DAYS }, (_, i) => addDays(state.windowStart, i));
  }

  async function loadWindow() {
    const seq = ++state.loadSeq;
    const from = state.windowStart < today ? today : state.windowStart;
    const end = addDays(state.windowStart, WINDOW_DAYS - 1);
    const to = end > lastDate ? lastDate : end;
    state.loaded = false;
    renderDays();
    renderSlots();
    let answer;
    try {
      answer = await ctx.api.patient.availability(doctor.id, from, daysBetween(from, to) + 1, abort.signal);
    } catch (error) {
      if (state.closed || seq !== state.loadSeq) return false;
      state.loaded = true;
      replace(slotList);
      replace(slotNotice,
        message('error', loadFailure(error)),
        h('button', { type: 'button', class: 'btn', onclick: () => reload({}) }, 'Try again'));
      renderDays();
      return false;
    }
    if (state.closed || seq !== state.loadSeq) return false;
    state.days = new Map(answer.days.map((d) => [d.date, d]));
    state.yourHold = answer.your_hold ?? null;
    state.loaded = true;
    renderDays();
    renderSlots();
    return true;
  }

  async function reload({ announceDone = false } = {}) {
    const ok = await loadWindow();
    if (!ok || state.closed) return;
    checkSelectedStillOurs();
    if (announceDone) ctx.announce('Times refreshed.');
  }

  function loadFailure(error) {
    if (error instanceof ApiError && error.code === 'doctor_unavailable') {
      return `${doctor.name} is not taking bookings right now.`;
    }
    if (error instanceof ApiError && error.retryable) {
      return 'The times could not be loaded just now. Please try again.';
    }
    return `The times could not be loaded: ${error.message}`;
  }

  function shiftWindow(direction) {
    const next = addDays(state.windowStart, direction * WINDOW_DAYS);
    if (next > lastDate || addDays(next, WINDOW_DAYS - 1) < today) return;
    state.windowStart = next;
    loadWindow().then((ok) => {
      if (!ok || state.closed) return;
      if (!state.date || !windowDates().includes(state.date)) {
        const free = firstFreeDate() ?? windowDates().find(pickable) ?? null;
        selectDate(free, { focus: false });
      }
    });
  }

  // ---- days ----
  function dayInfo(date) {
    if (date < today) return { pickable: false, text: 'past' };
    if (date > lastDate) return { pickable: false, text: 'not open for booking yet' };
    const day = state.days.get(date);
    if (!day) return { pickable: false, text: state.loaded ? 'not available' : 'loading' };
    if (!day.enabled) return { pickable: false, text: 'closed' };
    const open = day.slots.filter((s) => s.status !== 'past');
    if (open.length === 0) return { pickable: false, text: 'no times left' };
    // Further ahead than the doctor's booking window: not bookable yet.
    if (open.every((s) => s.status === 'outside_booking_window')) return { pickable: false, text: 'not open for booking yet' };
    const free = day.slots.filter((s) => s.status === 'available').length;
    return { pickable: true, free, text: free === 0 ? 'no free times' : `${free} free ${free === 1 ? 'time' : 'times'}` };
  }

  function pickable(date) {
    return dayInfo(date).pickable;
  }

  function firstFreeDate() {
    return windowDates().find((d) => dayInfo(d).free > 0) ?? null;
  }

  function renderDays() {
    const dates = windowDates();
    const endDate = dates[dates.length - 1];
    const first = dateParts(dates[0]);
    const last = dateParts(endDate);
    setText(rangeLabel, `${first.month} ${first.day} – ${last.month} ${last.day}`);
    earlier.disabled = state.windowStart <= today;
    later.disabled = addDays(state.windowStart, WINDOW_DAYS) > lastDate;
    const focusedDate = dayGrid.contains(document.activeElement) ? document.activeElement.dataset.date : null;
    const buttons = dates.map((date) => {
      const info = dayInfo(date);
      const parts = dateParts(date);
      const selected = date === state.date;
      const classes = ['day', info.pickable ? '' : 'day-off', selected ? 'day-selected' : '', info.free > 0 ? 'day-free' : '']
        .filter(Boolean).join(' ');
      // The name comes from the visible text plus hidden connectors, so what is seen is
      // what is said: "Wed, 2 December 2026: 5 free".
      return h('button', {
        type: 'button',
        class: classes,
        disabled: !info.pickable,
        'aria-pressed': selected ? 'true' : 'false',
        dataset: { date },
        onclick: () => selectDate(date, { focus: false }),
      },
      h('span', { class: 'day-wd' }, parts.weekday),
      hidden(', '),
      h('span', { class: 'day-num' }, parts.day),
      hidden(` ${parts.monthYear}: `),
      h('span', { class: 'day-note' }, dayNote(info)));
    });
    replace(dayGrid, buttons);
    if (focusedDate) {
      const again = dayGrid.querySelector(`[data-date="${focusedDate}"]`);
      if (again && !again.disabled) again.focus();
    }
  }

  function dayNote(info) {
    if (info.pickable) return info.free > 0 ? `${info.free} free` : 'full';
    return {
      past: 'past',
      loading: '…',
      'no times left': 'none left',
      'not open for booking yet': 'later',
    }[info.text] ?? 'closed';
  }

  function selectDate(date, { focus }) {
    state.date = date;
    renderDays();
    renderSlots();
    // A load still running when the dialog closed must not put the date back in the hash.
    if (date && !state.closed) onDateChange(date);
    if (focus && date) {
      const button = dayGrid.querySelector(`[data-date="${date}"]`);
      if (button && (document.activeElement === closeButton || !dialog.contains(document.activeElement))) {
        button.focus();
      }
    }
  }

  // ---- slots ----
  function slotState(slot) {
    if (reschedule && Date.parse(slot.start) === Date.parse(reschedule.scheduled_at)) return 'current';
    const sel = state.selected;
    const mine = state.myHolds.get(Date.parse(slot.start));
    if (slot.status === 'held' && mine && mine > Date.now() && !(sel && sel.start === slot.start)) {
      return 'available'; // held by this patient before choosing another time: theirs to pick
    }
    if (sel && sel.start === slot.start) {
      if (sel.pending) return 'checking';
      if (sel.held) return 'mine';
      // Our own ended hold, until the server's next tick frees it.
      if (slot.status === 'available' || (slot.status === 'held' && sel.expired)) return 'chosen';
    }
    return slot.status;
  }

  function renderSlots() {
    const day = state.date ? state.days.get(state.date) : null;
    dayTitle.textContent = state.date ? longDate(state.date) : '';
    if (!state.loaded) {
      slotList.setAttribute('aria-busy', 'true');
      replace(slotList, h('p', { class: 'loading' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading times…'));
      return;
    }
    slotList.removeAttribute('aria-busy');
    if (!day) {
      replace(slotList, h('p', { class: 'empty' }, 'Choose a date to see its times.'));
      return;
    }
    const slots = day.slots.map((s) => ({ ...s, date: day.date }));
    const free = slots.filter((s) => s.status === 'available').length;
    const focusedStart = slotList.contains(document.activeElement) ? document.activeElement.dataset.start : null;
    const buttons = slots.map((slot) => slotButton(slot));
    replace(slotList,
      free === 0 ? h('p', { class: 'empty' }, 'No free slots on this day. Please choose another date.') : null,
      buttons.length ? h('ul', { class: 'slots', role: 'list' }, buttons.map((b) => h('li', {}, b))) : null);
    if (focusedStart) {
      const again = slotList.querySelector(`[data-start="${focusedStart}"]`);
      if (again && !again.disabled) again.focus();
      else timesHeading.focus();
    }
    renderHold();
    renderSummary();
  }

  // A time button. Its accessible name is its visible text plus hidden connectors, e.g.
  // "22:30 America/New_York, Tue, Dec 1; doctor: 09:00 Asia/Kolkata; Booked".
  function slotButton(slot) {
    const st = slotState(slot);
    const myDate = dateIn(slot.start, zone);
    const enabled = st === 'available' || st === 'mine' || st === 'chosen';
    const state = {
      available: [hidden('; available')],
      booked: [hidden('; '), h('span', { class: 'badge badge-booked' }, 'Booked')],
      held: [hidden('; '), h('span', { class: 'badge badge-held' }, 'Held', hidden(' by another patient'))],
      past: [hidden('; '), h('span', { class: 'badge badge-past' }, 'Past')],
      full: [hidden('; '), h('span', { class: 'badge badge-past' }, 'Day full')],
      outside_booking_window: [hidden('; '), h('span', { class: 'badge badge-past' }, 'Not open yet')],
      mine: [hidden('; selected, '), h('span', { class: 'badge badge-mine' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), 'Held for you')],
      checking: [hidden('; selected, '), h('span', { class: 'badge badge-mine' }, 'Checking…')],
      chosen: [hidden('; '), h('span', { class: 'badge badge-chosen' }, 'Selected'), hidden(', not held: select again to hold it')],
      current: [hidden('; '), h('span', { class: 'badge badge-current' }, 'Your current time')],
    }[st] ?? [hidden(`; ${st}`)];
    return h('button', {
      type: 'button',
      class: `slot slot-${st}`,
      disabled: !enabled,
      'aria-pressed': ['mine', 'chosen', 'checking'].includes(st) ? 'true' : 'false',
      dataset: { start: slot.start },
      onclick: () => selectSlot(slot),
    },
    h('span', { class: 'slot-main' },
      h('span', { class: 'slot-time' }, timeIn(slot.start, zone)),
      hidden(' '),
      h('span', { class: 'slot-zone' }, zone)),
    zonesDiffer && myDate !== slot.date
      ? [hidden(', '), h('span', { class: 'slot-date' }, shortDateIn(slot.start, zone))]
      : null,
    zonesDiffer
      ? [hidden('; '), h('span', { class: 'slot-doctor' }, `doctor: ${timeIn(slot.start, doctorZone)} ${doctorZone}`)]
      : null,
    state);
  }

  function findSlot(start) {
    const t = Date.parse(start);
    for (const day of state.days.values()) {
      const slot = day.slots.find((s) => Date.parse(s.start) === t);
      if (slot) return { day, slot };
    }
    return null;
  }

  // ---- holding a time ----
  /** Takes up this patient's own live hold (from availability's `your_hold`) if its time
   * is in the loaded window; answers whether it did. */
  function resumeHold() {
    const hold = state.yourHold;
    if (!hold || Date.parse(hold.held_until) <= Date.now()) return false;
    const found = findSlot(hold.start);
    if (!found) return false;
    selectDate(found.day.date, { focus: true });
    holdPlaced(found.slot.start, hold.held_until);
    return true;
  }

  /** The server holds `start` for this patient until `heldUntil` (RFC 3339). */
  function holdPlaced(start, heldUntil) {
    state.selected = { start, pending: false, held: true, heldUntil: Date.parse(heldUntil), expired: false };
    state.myHolds.set(Date.parse(start), state.selected.heldUntil);
    renderSlots();
    clearInterval(state.holdTimer);
    state.holdTimer = setInterval(tickHold, 250);
    ctx.announce(`${timeIn(start, zone)} is held for you until ${timeIn(heldUntil, zone)}.`);
  }

  async function selectSlot(slot) {
    if (state.inFlight) return;
    if (state.selected?.start === slot.start && (state.selected.pending || state.selected.held)) return;
    clearHold();
    clearFieldError('time');
    replace(slotNotice);
    state.selected = { start: slot.start, pending: true, held: false, heldUntil: null, expired: false };
    renderSlots();
    let answer;
    try {
      answer = await ctx.api.patient.checkSlot(doctor.id, slot.start, true);
    } catch (error) {
      if (state.closed) return;
      if (state.selected?.start !== slot.start) {
        // The live feed told of the conflict first; the server's next times still help.
        if (!state.selected && error instanceof ApiError && error.status === 409) offerNext(error.nextAvailable);
        return;
      }
      state.selected = null;
      if (error instanceof ApiError && error.status === 409) {
        conflict(error.message || CONFLICT_MESSAGE, { next: error.nextAvailable });
      } else if (error instanceof ApiError && error.retryable) {
        replace(slotNotice, message('warning', `This time could not be held just now. Please try again${afterText(error.retryAfter)}.`));
        renderSlots();
      } else {
        replace(slotNotice, message('error', `${error.message} Please choose another time.`));
        reload();
      }
      return;
    }
    if (state.closed || state.selected?.start !== slot.start) return;
    if (answer.held_until) {
      holdPlaced(slot.start, answer.held_until);
    } else {
      state.selected.pending = false;
      renderSlots();
    }
  }

  function renderHold() {
    const sel = state.selected;
    // Rebuilt only when the hold changes: its messages are live regions.
    const key = sel && !sel.pending ? `${sel.start}|${sel.held}|${sel.expired}` : '';
    if (key === state.holdKey) return;
    state.holdKey = key;
    if (!sel || sel.pending) {
      replace(holdBox);
      return;
    }
    const when = `${timeIn(sel.start, zone)} ${zone}`;
    if (sel.held) {
      replace(holdBox,
        h('p', { class: 'hold-live' },
          h('span', { class: 'dot', 'aria-hidden': 'true' }),
          `${when} is held for you. Time left: `,
          h('span', { role: 'timer', class: 'timer', 'aria-label': 'Hold time left' },
            countdown(sel.heldUntil - Date.now()))));
    } else if (sel.expired) {
      replace(holdBox,
        message('warning',
          `Your hold on ${when} has ended, and we did not renew it so that others can book. `,
          'You can still confirm this time if it is free, or select it again to hold it.'));
    } else {
      replace(holdBox);
    }
  }

  function tickHold() {
    const sel = state.selected;
    if (!sel || !sel.held) return;
    const left = sel.heldUntil - Date.now();
    const timer = holdBox.querySelector('[role="timer"]');
    if (left <= 0) {
      holdExpired();
      return;
    }
    const text = countdown(left);
    if (timer && timer.textContent !== text) timer.textContent = text;
  }

  function holdExpired() {
    clearInterval(state.holdTimer);
    state.holdTimer = null;
    if (!state.selected) return;
    state.selected.held = false;
    state.selected.expired = true;
    renderSlots();
    ctx.announce('Your hold has ended.');
    // The server frees the hold on its next tick; then show the time as it stands.
    clearTimeout(state.expiryReload);
    state.expiryReload = setTimeout(() => reload(), 1500);
  }

  function clearHold() {
    clearInterval(state.holdTimer);
    clearTimeout(state.expiryReload);
    state.holdTimer = null;
    state.selected = null;
  }

  /** After a reload: is the selected time still free (or held by us)? */
  function checkSelectedStillOurs() {
    const sel = state.selected;
    if (!sel || sel.pending || sel.held) return;
    const found = findSlot(sel.start);
    if (!found) return;
    if (found.slot.status === 'booked') conflict(CONFLICT_MESSAGE, { reloadNow: false });
    else if (found.slot.status === 'held') takenByHold();
    else if (found.slot.status === 'past') {
      clearHold();
      replace(slotNotice, message('warning', 'That time has passed. Please choose another time.'));
      renderSlots();
    }
  }

  function takenByHold() {
    clearHold();
    replace(slotNotice, message('error', 'Another patient is holding this time right now. Please select a different time.'));
    renderSlots();
    timesHeading.focus();
  }

  /** The seed's 409: say so, refresh at once, clear the selection, keep the form. */
  function conflict(text, { reloadNow = true, next = [] } = {}) {
    clearHold();
    replace(slotNotice,
      message('error', h('strong', {}, text || CONFLICT_MESSAGE), ' ',
        h('span', {}, 'Please pick another time below; what you typed is kept.')));
    offerNext(next);
    renderSlots();
    timesHeading.focus();
    if (reloadNow) reload();
  }

  /** Shows the next free times under the conflict message (replacing earlier ones). */
  function offerNext(next) {
    if (!next?.length) return;
    slotNotice.querySelector('.next-free')?.remove();
    slotNotice.append(nextChoices(next));
  }

  // The server's next free times after the one that was taken (`next_available` of the
  // 409): one click selects and holds one, like picking it in the list.
  function nextChoices(starts) {
    const titleId = uid('next-title');
    return h('div', { class: 'next-free', role: 'group', 'aria-labelledby': titleId },
      h('p', { id: titleId, class: 'next-free-title' }, 'Next free times'),
      h('ul', { class: 'slots', role: 'list' }, starts.map((start) => h('li', {},
        h('button', {
          type: 'button',
          class: 'slot slot-available',
          onclick: () => chooseNext(start),
        },
        hidden('Choose '),
        h('span', { class: 'slot-time' }, timeIn(start, zone)),
        hidden(' '),
        h('span', { class: 'slot-zone' }, zone),
        hidden(', '),
        h('span', { class: 'slot-date' }, shortDateIn(start, zone)))))));
  }

  async function chooseNext(start) {
    let found = findSlot(start);
    if (!found) {
      await reload();
      if (state.closed) return;
      found = findSlot(start);
    }
    if (!found) {
      replace(slotNotice, message('error', 'That time is no longer listed. Please choose another time.'));
      return;
    }
    selectDate(found.day.date, { focus: false });
    await selectSlot(found.slot);
  }

  // ---- live updates ----
  function openStream() {
    subscribe({
      signal: abort.signal,
      open: (lastId, signal) => ctx.api.patient.availabilityStream(doctor.id, lastId, signal),
      fatal: (error) => error instanceof ApiError && [400, 401, 403, 404].includes(error.status),
      onState: (s) => {
        if (s === state.live) return;
        state.live = s;
        liveState.classList.toggle('live-off', s !== 'live');
        replace(liveState, h('span', { class: 'live-dot', 'aria-hidden': 'true' }),
          s === 'live' ? 'Live updates on' : 'Reconnecting to live updates…');
      },
      onEvent,
    });
  }

  function onEvent({ event, data }) {
    if (state.closed) return;
    let payload = {};
    try {
      payload = JSON.parse(data);
    } catch {
      return;
    }
    if (event === 'ready') return;
    if (event === 'schedule_changed' || event === 'resync') {
      reload();
      return;
    }
    if (!payload.start || !payload.status) return;
    const found = findSlot(payload.start);
    if (!found) return;
    const status = payload.status;
    if (!['available', 'booked', 'held'].includes(status)) return;
    const sel = state.selected;
    const isSelected = sel && Date.parse(sel.start) === Date.parse(payload.start);
    found.slot.status = status;
    if (isSelected) {
      if (status === 'booked' && !state.inFlight) {
        conflict(CONFLICT_MESSAGE);
        renderDays();
        return;
      }
      if (status === 'held' && !sel.pending && !sel.held && !state.inFlight) {
        takenByHold();
        renderDays();
        return;
      }
      if (status === 'available' && sel.held) {
        // The server no longer holds it for us (released elsewhere, e.g. by this page's
        // previous load as it left): say so rather than count down a hold that is gone.
        holdExpired();
      }
    }
    renderDays();
    renderSlots();
  }

  // ---- the form ----
  function field(spec) {
    const id = uid(`f-${spec.name}`);
    const limit = MEDICAL_LIMITS[spec.name];
    const countId = `${id}-count`;
    const hintId = `${id}-hint`;
    const errorId = `${id}-error`;
    const count = h('span', { class: 'char-count', id: countId }, `0 / ${limit}`);
    const error = h('p', { class: 'field-error', id: errorId });
    const input = h('textarea', {
      id, name: spec.name, rows: spec.rows, maxlength: limit,
      required: spec.required ? true : null,
      'aria-describedby': `${hintId} ${countId} ${errorId}`,
      oninput: () => {
        count.textContent = `${input.value.length} / ${limit}`;
        count.classList.toggle('char-count-near', input.value.length > limit * 0.9);
        clearFieldError(spec.name);
      },
    });
    fields.set(spec.name, { input, error, spec, limit });
    return h('div', { class: 'field' },
      h('label', { for: id },
        spec.label,
        spec.required ? h('span', { class: 'req' }, ' (required)') : null,
        h('span', { class: 'limit' }, ` up to ${limit} characters`)),
      h('p', { class: 'hint', id: hintId }, spec.hint),
      input,
      h('div', { class: 'field-foot' }, error, count));
  }

  function setFieldError(name, text) {
    if (name === 'consult_mode') {
      modeError.textContent = text;
      for (const m of modeRadios) m.input.setAttribute('aria-invalid', 'true');
      return;
    }
    if (name === 'time') {
      timeError.textContent = text;
      return;
    }
    if (name === 'patient_name') {
      nameError.textContent = text;
      nameInput.setAttribute('aria-invalid', 'true');
      return;
    }
    const f = fields.get(name);
    if (!f) return;
    f.error.textContent = text;
    f.input.setAttribute('aria-invalid', 'true');
  }

  function clearFieldError(name) {
    if (name === 'consult_mode') {
      modeError.textContent = '';
      for (const m of modeRadios) m.input.removeAttribute('aria-invalid');
      return;
    }
    if (name === 'time') {
      timeError.textContent = '';
      return;
    }
    if (name === 'patient_name') {
      nameError.textContent = '';
      nameInput.removeAttribute('aria-invalid');
      return;
    }
    const f = fields.get(name);
    if (!f) return;
    f.error.textContent = '';
    f.input.removeAttribute('aria-invalid');
  }

  function focusTarget(name) {
    if (name === 'consult_mode') return modeRadios[0].input;
    if (name === 'time') return timesHeading;
    if (name === 'patient_name') return nameInput;
    return fields.get(name)?.input;
  }

  function selectedMode() {
    return modeRadios.find((m) => m.input.checked)?.input.value ?? null;
  }

  /** Visits booked by the next Confirm: those added before, and this one if chosen. */
  function visitCount() {
    return pendingVisits().length + (state.selected ? 1 : 0);
  }

  function renderSummary() {
    const sel = state.selected;
    const mode = MODES.find((m) => m.value === selectedMode());
    if (!reschedule) {
      const added = pendingVisits().length;
      const n = visitCount();
      const label = added === 0 ? confirmLabel : `Confirm ${n} booking${n === 1 ? '' : 's'}`;
      if (!state.inFlight) setText(confirmButton, label);
      addButton.disabled = added + 1 >= MAX_VISITS;
    }
    if (!sel) {
      setText(summary, pendingVisits().length
        ? 'No time selected for another patient; Confirm books the visits above.'
        : 'No time selected yet.');
      return;
    }
    const mine = `${shortDateIn(sel.start, zone)}, ${timeIn(sel.start, zone)} ${zone}`;
    const theirs = zonesDiffer ? ` (${shortDateIn(sel.start, doctorZone)}, ${timeIn(sel.start, doctorZone)} ${doctorZone} for the doctor)` : '';
    setText(summary, reschedule
      ? `You are moving it to ${mine}${theirs}.`
      : `You are booking ${mine}${theirs}${mode ? `, by ${mode.label}` : ''}.`);
  }

  function validate() {
    const errors = [];
    if (!state.selected) errors.push(['time', 'Choose a time for your consultation.']);
    if (!reschedule && nameInput.value.trim() === '') {
      errors.push(['patient_name', "Please fill in the patient's name."]);
    }
    for (const [name, f] of fields) {
      const value = f.input.value;
      if (f.spec.required && value.trim() === '') errors.push([name, `Please fill in ${f.spec.label.toLowerCase()}.`]);
      else if (value.length > f.limit) errors.push([name, `Must be at most ${f.limit} characters.`]);
    }
    if (!reschedule && !selectedMode()) errors.push(['consult_mode', 'Choose Voice, Video or Chat.']);
    return errors;
  }

  function showErrors(errors) {
    for (const [name, text] of errors) setFieldError(name, text);
    replace(formNotice, message('error',
      errors.length === 1 ? 'Please correct the marked field.' : `Please correct the ${errors.length} marked fields.`));
    focusTarget(errors[0][0])?.focus();
  }

  /** This visit as one of a multi-patient booking's items. */
  function currentVisit() {
    const medical = {};
    for (const [name, f] of fields) medical[name] = f.input.value;
    return {
      doctor,
      scheduled_at: state.selected.start,
      consult_mode: selectedMode(),
      patient_name: nameInput.value.trim(),
      relation: relationSelect.value,
      medical,
    };
  }

  function clearErrors() {
    for (const name of [...fields.keys(), 'consult_mode', 'time', 'patient_name']) clearFieldError(name);
    replace(formNotice);
  }

  /** Keeps this visit for the booking and clears the form for the next patient, here or
   * with another doctor. The time stays held for a few minutes (not released). */
  function addAnother() {
    if (state.inFlight) return;
    clearErrors();
    const errors = validate();
    if (errors.length) {
      showErrors(errors);
      return;
    }
    const visit = currentVisit();
    clearInterval(state.holdTimer);
    state.selected = null;
    state.myHolds.clear();
    replace(holdBox);
    for (const f of fields.values()) {
      f.input.value = '';
      f.input.dispatchEvent(new Event('input'));
    }
    for (const m of modeRadios) m.input.checked = false;
    nameInput.value = '';
    relationSelect.value = 'child';
    addVisit(visit);
    renderSlots();
    ctx.announce(`${visit.patient_name}'s visit is added. Choose a time for the next patient, here or with another doctor.`);
    nameInput.focus();
  }

  /** Books the visits added before and this one (if a time is chosen) as one booking. */
  async function submitMany() {
    const added = pendingVisits();
    if (state.selected || added.length === 0) {
      const errors = validate();
      if (errors.length) {
        showErrors(errors);
        return;
      }
    }
    const visits = state.selected ? [...added, currentVisit()] : [...added];
    const body = { items: visits.map(toItem) };
    const fingerprint = JSON.stringify(body);
    const key = state.lastAttempt?.fingerprint === fingerprint ? state.lastAttempt.key : crypto.randomUUID();
    state.lastAttempt = null;
    setInFlight(true);
    let answer;
    try {
      answer = await ctx.api.patient.bookMany(body.items, key);
    } catch (error) {
      setInFlight(false);
      if (state.closed) return;
      if (error instanceof ApiError && error.item !== null && error.item < added.length) {
        // A visit added before: mark it, keep everything else as typed.
        const text = error.status === 409 ? 'This time was just taken: remove this visit and add it again with another time.'
          : `${error.message}. Remove this visit and add it again.`.replace('..', '.');
        markVisit(error.item, text);
        replace(formNotice, message('warning', 'One visit could not be booked, so none was. See the marked visit above.'));
        return;
      }
      bookingFailed(error, key, fingerprint);
      return;
    }
    setInFlight(false);
    clearVisits();
    finish(answer.booking.consultations[0], answer.booking);
  }

  async function submit(event) {
    event.preventDefault();
    if (state.inFlight || state.retryTimer) return;
    clearErrors();
    if (!reschedule && (pendingVisits().length > 0 || relationSelect.value !== 'self')) {
      await submitMany();
      return;
    }
    const errors = validate();
    if (errors.length) {
      showErrors(errors);
      return;
    }
    const booking = reschedule
      ? { scheduled_at: state.selected.start }
      : { doctor_id: doctor.id, scheduled_at: state.selected.start, consult_mode: selectedMode() };
    if (!reschedule) {
      for (const [name, f] of fields) {
        if (f.input.value.trim() !== '') booking[name] = f.input.value;
      }
    }
    // One key per attempt; the same key only to retry the same request (the same body:
    // the server refuses a key reused for another one) whose answer never came or was
    // "try again" (429/503/500), so a retry can never book twice.
    const fingerprint = JSON.stringify(booking);
    const key = state.lastAttempt?.fingerprint === fingerprint ? state.lastAttempt.key : crypto.randomUUID();
    state.lastAttempt = null;
    setInFlight(true);
    let answer;
    try {
      answer = reschedule
        ? await ctx.api.patient.reschedule(reschedule.id, booking.scheduled_at, key)
        : await ctx.api.patient.book(booking, key);
    } catch (error) {
      setInFlight(false);
      if (state.closed) return;
      bookingFailed(error, key, fingerprint);
      return;
    }
    setInFlight(false);
    if (state.closed && !answer) return;
    finish(answer.consultation);
  }

  function setInFlight(on) {
    state.inFlight = on;
    confirmButton.disabled = on;
    confirmButton.setAttribute('aria-busy', on ? 'true' : 'false');
    confirmButton.textContent = on ? (reschedule ? 'Moving…' : 'Booking…') : confirmLabel;
    if (!on) renderSummary();
  }

  function bookingFailed(error, key, fingerprint) {
    if (!(error instanceof ApiError)) {
      replace(formNotice, message('error', 'Something went wrong. Please try again.'));
      return;
    }
    if (error.status === 409 && error.code === 'time_slot_conflict') {
      conflict(error.message || CONFLICT_MESSAGE, { next: error.nextAvailable });
      replace(formNotice, message('warning', 'That time was taken. Pick another time above, then confirm again.'));
      return;
    }
    if (error.status === 409 && error.code === 'not_reschedulable') {
      replace(formNotice, message('error', 'This consultation can no longer be moved (it was cancelled or has started).'));
      return;
    }
    if (error.status === 400 && error.code === 'validation_failed' && Object.keys(error.errors).length) {
      const mapped = [];
      const other = [];
      for (const [field, reasons] of Object.entries(error.errors)) {
        const text = reasons.join(' ');
        // A multi-patient booking names this visit's fields `items[i].field`.
        const name = field.replace(/^items\[\d+\]\./, '');
        const known = fields.has(name) || name === 'consult_mode' ? name : name === 'scheduled_at' ? 'time' : null;
        if (known) mapped.push([known, text.charAt(0).toUpperCase() + text.slice(1)]);
        else other.push(`${name}: ${text}`);
      }
      if (mapped.length) showErrors(mapped);
      if (other.length) replace(formNotice, message('error', error.message));
      return;
    }
    if (error.status === 400) {
      // A booking rule (in the past, off the grid, day closed, doctor unavailable).
      clearHold();
      replace(slotNotice, message('error', `${error.message}. Please choose another time.`.replace('..', '.')));
      reload();
      timesHeading.focus();
      return;
    }
    if (error.retryable || error.status >= 500) {
      state.lastAttempt = { key, fingerprint };
      const wait = error.retryAfter ?? (error.status === 0 ? 2 : 1);
      const mayHave = error.code === 'timeout' || /may have completed/i.test(error.message);
      const first = error.status === 429
        ? 'Too many requests just now.'
        : error.status >= 500 && error.status !== 503
          ? 'Something went wrong on our side.'
          : mayHave
            ? 'The booking did not answer in time; it may have gone through.'
            : 'The service is busy right now.';
      replace(formNotice, message('error', first,
        ` Please try again: pressing ${confirmLabel} again is safe and never books twice.`));
      holdRetry(wait);
      return;
    }
    replace(formNotice, message('error', `${error.message}. Please try again.`.replace('..', '.')));
  }

  function holdRetry(seconds) {
    let left = seconds;
    const show = () => {
      retryNote.textContent = left > 0 ? `You can try again in ${left} s.` : '';
    };
    confirmButton.disabled = left > 0;
    show();
    if (left <= 0) return;
    state.retryTimer = setInterval(() => {
      left -= 1;
      show();
      if (left <= 0) {
        clearInterval(state.retryTimer);
        state.retryTimer = null;
        confirmButton.disabled = false;
      }
    }, 1000);
  }

  function afterText(seconds) {
    return seconds ? ` in ${seconds} second${seconds === 1 ? '' : 's'}` : '';
  }

  function finish(consultation, booking = null) {
    clearInterval(state.holdTimer);
    state.selected = null;
    state.myHolds.clear(); // the booking consumed the hold
    const done = onBooked;
    onBooked = () => {};
    closeQuietly();
    done(consultation, booking);
  }

  // ---- closing ----
  function closeQuietly() {
    onClose = () => {};
    opener = null;
    close();
  }

  function close() {
    if (state.closed) return;
    if (dialog.open) dialog.close();
    else onDialogClose();
  }

  /** Gives the doctor's time back to others when this patient held one and did not book
   * it (a booking consumed it already; then this answers `released: false`). */
  function releaseHold({ keepalive = false } = {}) {
    if (state.myHolds.size === 0 && !state.selected?.held) return;
    state.myHolds.clear();
    ctx.api.patient.releaseHold(doctor.id, { keepalive }).catch(() => {
      // Best effort: an unreleased hold still expires by itself.
    });
  }

  function onPageHide() {
    releaseHold({ keepalive: true });
  }
  window.addEventListener('pagehide', onPageHide);

  function onDialogClose() {
    if (state.closed) return;
    state.closed = true;
    window.removeEventListener('pagehide', onPageHide);
    stopVisits();
    if (state.selected !== null || state.myHolds.size > 0) releaseHold();
    abort.abort();
    clearInterval(state.holdTimer);
    clearTimeout(state.expiryReload);
    clearInterval(state.retryTimer);
    clearInterval(state.pastTimer);
    dialog.remove();
    if (opener?.isConnected) opener.focus();
    onClose();
  }

  return { close };
}
