// The patient's doctors list (approved doctors taking bookings): each a list item with the
// name as its heading, specialty, timezone, slot length and "Book Appointment", which
// opens the booking dialog. Route: `#/doctors[/<id>[/<date>]]`.

import { h, loading, message, replace } from '../dom.js';
import { browserZone, timeIn } from '../time.js';
import { bookableDoctors } from './directory.js';
import { openBooking } from './booking.js';
import { markJustBooked } from './confirmation.js';
import { markBookedTogether } from './consultations.js';

export function mount(root, ctx, params) {
  ctx.setTitle('Find a doctor');
  const zone = browserZone();
  const list = h('div', { class: 'doctor-list-wrap', 'aria-busy': 'true' }, loading('Loading doctors…'));
  const notice = h('div', {});
  replace(root,
    h('div', { class: 'screen-head' },
      h('h1', {}, 'Find a doctor'),
      h('p', { class: 'lead' },
        'Choose a doctor and book a consultation. Times are shown in your timezone, ',
        h('strong', {}, zone), '.')),
    notice,
    list);

  let doctors = [];
  let dialog = null; // {doctorId, close()}
  let alive = true;
  const openers = new Map();

  load();

  async function load() {
    try {
      doctors = await bookableDoctors({ fresh: true });
    } catch (error) {
      if (!alive) return;
      list.removeAttribute('aria-busy');
      replace(list,
        message('error', `The doctors could not be loaded: ${error.message}`),
        h('button', { type: 'button', class: 'btn', onclick: load }, 'Try again'));
      return;
    }
    if (!alive) return;
    list.removeAttribute('aria-busy');
    if (doctors.length === 0) {
      replace(list, h('p', { class: 'empty' }, 'No doctors are taking bookings right now. Please check again later.'));
      return;
    }
    replace(list, h('ul', { class: 'doctor-list', 'aria-label': 'Doctors' }, doctors.map(card)));
    route(params);
  }

  function card(doctor) {
    const headingId = `doctor-${doctor.id}-name`;
    const open = h('button', {
      type: 'button',
      class: 'btn btn-primary',
      'aria-label': `Book Appointment with ${doctor.name}`,
      onclick: () => openFor(doctor, null, true),
    }, 'Book Appointment');
    openers.set(doctor.id, open);
    const sameZone = doctor.timezone === zone;
    return h('li', { class: 'doctor card' },
      h('article', { 'aria-labelledby': headingId },
        h('h2', { id: headingId }, doctor.name),
        h('p', { class: 'specialty' }, doctor.specialty),
        h('dl', { class: 'facts' },
          h('div', {}, h('dt', {}, 'Timezone'), h('dd', {}, doctor.timezone)),
          h('div', {}, h('dt', {}, 'Consultation length'), h('dd', {}, `${doctor.slot_minutes} minutes`)),
          sameZone ? null : h('div', {},
            h('dt', {}, 'Their time now'),
            h('dd', {}, `${timeIn(Date.now(), doctor.timezone)} ${doctor.timezone}`))),
        open));
  }

  function openFor(doctor, date, push) {
    if (dialog?.doctorId === doctor.id) return;
    dialog?.close();
    const opener = openers.get(doctor.id);
    dialog = {
      doctorId: doctor.id,
      ...openBooking({
        ctx,
        doctor,
        date,
        opener,
        onDateChange: (d) => history.replaceState(null, '', `#/doctors/${doctor.id}/${d}`),
        onClose: () => {
          dialog = null;
          if (alive && /^#\/doctors\/\d+/.test(location.hash)) {
            history.replaceState(null, '', '#/doctors');
          }
        },
        onBooked: (consultation, booking) => {
          dialog = null;
          if (booking) {
            markBookedTogether(booking);
            ctx.navigate('/consultations');
            return;
          }
          markJustBooked(consultation);
          ctx.navigate(`/consultations/${consultation.id}`);
        },
      }),
    };
    if (push) history.pushState(null, '', `#/doctors/${doctor.id}`);
  }

  function route(p) {
    params = p;
    if (!doctors.length) return;
    if (p.doctorId == null) {
      dialog?.close();
      return;
    }
    const doctor = doctors.find((d) => d.id === p.doctorId);
    if (!doctor) {
      replace(notice, message('warning', 'That doctor is not taking bookings right now. Please choose another doctor.'));
      history.replaceState(null, '', '#/doctors');
      return;
    }
    openFor(doctor, p.date, false);
  }

  return {
    update(p) {
      route(p);
      return true;
    },
    unmount() {
      alive = false;
      dialog?.close();
    },
  };
}
