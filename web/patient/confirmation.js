// One consultation (`#/consultations/<id>`): right after booking, the confirmation with
// the reference, the time in both zones, the mode, the session status turning from
// pending to ready live, and "Add to calendar".

import { h, loading, message, replace } from '../dom.js';
import { icon, modeLabel } from '../icons.js';
import { joinDetails, sessionText } from '../join.js';
import { browserZone, dateTimeIn } from '../time.js';
import { calendarButton, confirmCancel } from './actions.js';
import { bookableDoctors, doctorName } from './directory.js';

const POLL_MS = 1000;
const MAX_POLLS = 60;

let justBooked = null;

/** Marks the consultation the booking dialog just made, for the "confirmed" heading. */
export function markJustBooked(consultation) {
  justBooked = consultation.id;
}

export function mount(root, ctx, { id }) {
  const fresh = justBooked === id;
  justBooked = null;
  const title = fresh ? 'Booking confirmed' : 'Consultation';
  ctx.setTitle(title);
  const zone = browserZone();
  const body = h('div', { class: 'stack' }, loading('Loading the consultation…'));
  replace(root,
    h('div', { class: 'screen-head' }, h('h1', {}, title)),
    body);

  let alive = true;
  let pollTimer = null;
  let polls = 0;
  let doctors = [];
  let consultation = null;
  const sessionStatus = h('p', { class: 'session-status', role: 'status' });
  const joinBox = h('div', {});

  load();

  async function load() {
    try {
      [consultation, doctors] = await Promise.all([
        ctx.api.patient.consultation(id).then((a) => a.consultation),
        bookableDoctors().catch(() => []),
      ]);
    } catch (error) {
      if (!alive) return;
      replace(body,
        message('error', `This consultation could not be loaded: ${error.message}`),
        h('p', {}, h('a', { href: '#/consultations' }, 'Back to my consultations')));
      return;
    }
    if (!alive) return;
    render();
    if (consultation.session_status === 'pending') poll();
    else if (consultation.session_status === 'ready') showJoin();
  }

  function render() {
    const c = consultation;
    const doctor = doctors.find((d) => d.id === c.doctor_id);
    const doctorZone = c.doctor_timezone ?? doctor?.timezone;
    const name = c.doctor_name ?? doctorName(doctors, c.doctor_id);
    const active = c.status === 'scheduled' || c.status === 'pending';
    renderSession();
    const cancelButton = active ? h('button', {
      type: 'button',
      class: 'btn btn-danger-quiet',
      onclick: async () => {
        const done = await confirmCancel(ctx, c,
          `${c.reference} with ${name}, ${dateTimeIn(c.scheduled_at, zone)} ${zone}.`, cancelButton);
        if (done) {
          consultation = done;
          render();
          ctx.announce(`${c.reference} was cancelled.`);
        }
      },
    }, 'Cancel consultation') : null;
    replace(body,
      fresh ? message('success', h('strong', {}, `Your consultation is booked. Reference ${c.reference}.`)) : null,
      h('section', { class: 'card confirmation', 'aria-labelledby': 'confirmation-ref' },
        h('h2', { id: 'confirmation-ref' }, c.reference),
        h('dl', { class: 'facts facts-wide' },
          row('Doctor', name),
          row('Your time', `${dateTimeIn(c.scheduled_at, zone)} ${zone}`),
          doctorZone && doctorZone !== zone ? row("Doctor's time", `${dateTimeIn(c.scheduled_at, doctorZone)} ${doctorZone}`) : null,
          row('Length', `${c.duration_minutes} minutes`),
          row('Mode', h('span', { class: 'mode-inline' }, icon(c.consult_mode), modeLabel(c.consult_mode), ' (in this app)')),
          row('Status', statusText(c.status)),
          row('Session', sessionStatus)),
        joinBox,
        h('div', { class: 'button-row' },
          active ? calendarButton(ctx, c) : null,
          cancelButton)),
      h('p', { class: 'links' },
        h('a', { href: '#/consultations' }, 'My consultations'),
        h('a', { href: '#/doctors' }, 'Book another appointment')));
  }

  function renderSession() {
    const s = consultation.session_status;
    sessionStatus.className = `session-status session-${s}`;
    replace(sessionStatus,
      s === 'pending' ? h('span', { class: 'spinner', 'aria-hidden': 'true' }) : null,
      sessionText(s));
  }

  function poll() {
    pollTimer = setTimeout(async () => {
      if (!alive) return;
      polls += 1;
      try {
        consultation = (await ctx.api.patient.consultation(id)).consultation;
      } catch {
        // Keep polling within the bound; a 401 signs out.
      }
      if (!alive) return;
      renderSession();
      if (consultation.session_status === 'pending' && polls < MAX_POLLS) poll();
      else if (consultation.session_status === 'pending') {
        replace(sessionStatus, 'Your session is still being prepared. Check My consultations in a minute.');
      } else if (consultation.session_status === 'ready') showJoin();
    }, POLL_MS);
  }

  async function showJoin() {
    try {
      const answer = await ctx.api.patient.session(id);
      if (!alive) return;
      replace(joinBox, h('h3', {}, 'Join details'), joinDetails(answer));
    } catch (error) {
      if (alive) replace(joinBox, message('error', `Join details could not be loaded: ${error.message}`));
    }
  }

  return {
    unmount() {
      alive = false;
      clearTimeout(pollTimer);
    },
  };
}

function row(term, value) {
  return h('div', {}, h('dt', {}, term), h('dd', {}, value));
}

export function statusText(status) {
  return {
    pending: 'Pending',
    scheduled: 'Scheduled',
    completed: 'Completed',
    cancelled: 'Cancelled',
    no_show: 'Missed',
  }[status] ?? status;
}
