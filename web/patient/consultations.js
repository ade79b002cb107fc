// "My consultations" (`#/consultations`): upcoming and past, cancel with a confirmation,
// join details once the session is ready, and "Add to calendar".

import { h, loading, message, replace } from '../dom.js';
import { icon, modeLabel } from '../icons.js';
import { joinDetails, sessionText } from '../join.js';
import { browserZone, dateIn, dateTimeIn } from '../time.js';
import { calendarButton, confirmCancel } from './actions.js';
import { statusText } from './confirmation.js';
import { openBooking } from './booking.js';
import { bookableDoctors, doctorName } from './directory.js';
import { relationLabel } from './family.js';

let bookedTogether = null;

/** Marks the multi-patient booking the booking dialog just made, for the success notice
 * on this screen. */
export function markBookedTogether(booking) {
  bookedTogether = booking;
}

export function mount(root, ctx) {
  ctx.setTitle('My consultations');
  const zone = browserZone();
  const notice = h('div', {});
  if (bookedTogether) {
    const b = bookedTogether;
    bookedTogether = null;
    replace(notice, message('success',
      h('strong', {}, `Booking confirmed: ${b.consultations.length} consultations.`),
      h('ul', { class: 'booked-list' }, b.consultations.map((c) => h('li', {},
        `${c.reference}: ${c.patient_name}, ${dateTimeIn(c.scheduled_at, zone)} ${zone}`)))));
  }
  const body = h('div', { class: 'stack', 'aria-busy': 'true' }, loading('Loading your consultations…'));
  replace(root,
    h('div', { class: 'screen-head' },
      h('h1', {}, 'My consultations'),
      h('p', { class: 'lead' }, `Times are shown in your timezone, ${zone}.`)),
    notice,
    body);

  let alive = true;
  let doctors = [];
  load();

  async function load() {
    let list;
    try {
      [list, doctors] = await Promise.all([
        ctx.api.patient.consultations().then((a) => a.consultations),
        bookableDoctors().catch(() => []),
      ]);
    } catch (error) {
      if (!alive) return;
      body.removeAttribute('aria-busy');
      replace(body,
        message('error', `Your consultations could not be loaded: ${error.message}`),
        h('button', { type: 'button', class: 'btn', onclick: load }, 'Try again'));
      return;
    }
    if (!alive) return;
    body.removeAttribute('aria-busy');
    const now = Date.now();
    const isUpcoming = (c) => (c.status === 'scheduled' || c.status === 'pending')
      && Date.parse(c.scheduled_at) + c.duration_minutes * 60000 > now;
    const upcoming = list.filter(isUpcoming)
      .sort((a, b) => Date.parse(a.scheduled_at) - Date.parse(b.scheduled_at));
    const past = list.filter((c) => !isUpcoming(c))
      .sort((a, b) => Date.parse(b.scheduled_at) - Date.parse(a.scheduled_at));
    replace(body,
      h('section', { 'aria-labelledby': 'upcoming-title', class: 'stack' },
        h('h2', { id: 'upcoming-title' }, `Upcoming (${upcoming.length})`),
        upcoming.length
          ? h('ul', { class: 'consultation-list', 'aria-label': 'Upcoming consultations' }, upcoming.map((c) => item(c, true)))
          : h('p', { class: 'empty' }, 'You have no upcoming consultations. ', h('a', { href: '#/doctors' }, 'Find a doctor'), '.')),
      h('section', { 'aria-labelledby': 'past-title', class: 'stack' },
        h('h2', { id: 'past-title' }, `Past and cancelled (${past.length})`),
        past.length
          ? h('ul', { class: 'consultation-list', 'aria-label': 'Past and cancelled consultations' }, past.map((c) => item(c, false)))
          : h('p', { class: 'empty' }, 'Nothing here yet.')));
  }

  function item(c, upcoming) {
    // The API names the doctor on each consultation; the list is the fallback.
    const name = c.doctor_name ?? doctorName(doctors, c.doctor_id);
    const doctorZone = c.doctor_timezone ?? doctors.find((d) => d.id === c.doctor_id)?.timezone;
    const headingId = `consultation-${c.id}-title`;
    const joinBox = h('div', {});
    const when = `${dateTimeIn(c.scheduled_at, zone)} ${zone}`;
    const joinButton = upcoming && c.session_status === 'ready' ? h('button', {
      type: 'button',
      class: 'btn',
      'aria-expanded': 'false',
      'aria-label': `Join details for ${c.reference}`,
      onclick: async () => {
        if (joinButton.getAttribute('aria-expanded') === 'true') {
          joinButton.setAttribute('aria-expanded', 'false');
          replace(joinBox);
          return;
        }
        joinButton.setAttribute('aria-expanded', 'true');
        replace(joinBox, loading('Loading join details…'));
        try {
          replace(joinBox, joinDetails(await ctx.api.patient.session(c.id)));
        } catch (error) {
          replace(joinBox, message('error', `Join details could not be loaded: ${error.message}`));
        }
      },
    }, 'Join details') : null;
    const cancelButton = upcoming ? h('button', {
      type: 'button',
      class: 'btn btn-danger-quiet',
      'aria-label': `Cancel ${c.reference}`,
      onclick: async () => {
        const done = await confirmCancel(ctx, c, `${c.reference} with ${name}, ${when}.`, cancelButton);
        if (done) {
          const note = message('success', `${c.reference} was cancelled. The time is free again.`);
          note.setAttribute('tabindex', '-1');
          replace(notice, note);
          await load();
          note.focus();
        }
      },
    }, 'Cancel') : null;
    // Moving needs the doctor's calendar: only while the doctor takes bookings.
    const bookable = doctors.find((d) => d.id === c.doctor_id);
    const rescheduleButton = upcoming && bookable ? h('button', {
      type: 'button',
      class: 'btn',
      'aria-label': `Reschedule ${c.reference}`,
      onclick: () => {
        openBooking({
          ctx,
          doctor: bookable,
          // On the date of its current time (the doctor's calendar), to show it.
          date: dateIn(c.scheduled_at, bookable.timezone),
          opener: rescheduleButton,
          reschedule: c,
          onBooked: async (moved) => {
            const note = message('success',
              `${moved.reference} is moved to ${dateTimeIn(moved.scheduled_at, zone)} ${zone}. The doctor is told.`);
            note.setAttribute('tabindex', '-1');
            replace(notice, note);
            await load();
            note.focus();
          },
        });
      },
    }, 'Reschedule') : null;
    return h('li', { class: 'card consultation' },
      h('article', { 'aria-labelledby': headingId },
        h('h3', { id: headingId }, h('a', { href: `#/consultations/${c.id}` }, `${name}, ${when}`)),
        h('dl', { class: 'facts' },
          h('div', {}, h('dt', {}, 'Reference'), h('dd', {}, c.reference)),
          c.patient_name
            ? h('div', {}, h('dt', {}, 'For'), h('dd', {}, c.relation ? `${c.patient_name} (${relationLabel(c.relation)})` : c.patient_name))
            : null,
          doctorZone && doctorZone !== zone
            ? h('div', {}, h('dt', {}, "Doctor's time"), h('dd', {}, `${dateTimeIn(c.scheduled_at, doctorZone)} ${doctorZone}`))
            : null,
          h('div', {}, h('dt', {}, 'Mode'), h('dd', { class: 'mode-inline' }, icon(c.consult_mode), modeLabel(c.consult_mode))),
          h('div', {}, h('dt', {}, 'Status'), h('dd', {}, h('span', { class: `badge badge-status-${c.status}` }, statusText(c.status)))),
          upcoming ? h('div', {}, h('dt', {}, 'Session'), h('dd', {}, sessionText(c.session_status))) : null),
        upcoming ? h('div', { class: 'button-row' }, joinButton, rescheduleButton, calendarButton(ctx, c), cancelButton) : null,
        joinBox));
  }

  return {
    unmount() {
      alive = false;
    },
  };
}
