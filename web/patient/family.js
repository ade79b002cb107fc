// A booking for several patients (the signed-in patient and family members), built one
// visit at a time in the booking dialog ("Add another patient"), with one doctor or
// several, and sent as one all-or-nothing request (`POST /patient/bookings`). The visits
// live in memory only (they hold medical text): a reload forgets them; the times they
// held are released by themselves a few minutes later.

import { h, replace } from '../dom.js';
import { modeLabel } from '../icons.js';
import { dateTimeIn } from '../time.js';

/** The API's bound on one booking. */
export const MAX_VISITS = 10;
/** The API's bounds on who a visit is for, in characters. */
export const NAME_LIMIT = 200;

export const RELATIONS = [
  { value: 'self', label: 'Myself' },
  { value: 'child', label: 'Child' },
  { value: 'parent', label: 'Parent' },
  { value: 'partner', label: 'Spouse or partner' },
  { value: 'other', label: 'Other family member' },
];

/** Visits added so far: `{doctor, scheduled_at, consult_mode, patient_name, relation,
 * medical: {...}, problem: null | text}`. */
const visits = [];
const listeners = new Set();

function changed() {
  for (const listener of listeners) listener();
}

export function pendingVisits() {
  return visits;
}

/** Calls `listener` whenever the visits change; answers the unsubscribe function. */
export function onVisitsChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function addVisit(visit) {
  visits.push({ ...visit, problem: null });
  changed();
}

export function removeVisit(index) {
  visits.splice(index, 1);
  changed();
}

export function clearVisits() {
  visits.length = 0;
  changed();
}

/** Marks the visit at `index` with what the server said about it. */
export function markVisit(index, problem) {
  if (!visits[index]) return;
  visits[index].problem = problem;
  changed();
}

/** One item of `POST /patient/bookings`. */
export function toItem(visit) {
  const item = {
    doctor_id: visit.doctor.id,
    scheduled_at: visit.scheduled_at,
    consult_mode: visit.consult_mode,
    patient_name: visit.patient_name,
    relation: visit.relation,
  };
  for (const [name, value] of Object.entries(visit.medical)) {
    if (value.trim() !== '') item[name] = value;
  }
  return item;
}

export function relationLabel(value) {
  return RELATIONS.find((r) => r.value === value)?.label ?? value;
}

/** The list of visits added so far, each with its Remove button and any problem, into
 * `container` (emptied when there are none). */
export function renderVisits(container, zone) {
  if (visits.length === 0) {
    replace(container);
    return;
  }
  const headingId = `${container.id || 'visits'}-title`;
  replace(container,
    h('h3', { id: headingId }, `Visits in this booking (${visits.length})`),
    h('p', { class: 'muted' }, 'They are booked together when you confirm: all of them, or none.'),
    h('ul', { class: 'visit-list', 'aria-labelledby': headingId }, visits.map((v, i) => h('li', {
      class: v.problem ? 'visit visit-problem' : 'visit',
    },
    h('p', { class: 'visit-who' }, h('strong', {}, v.patient_name), ` (${relationLabel(v.relation)})`),
    h('p', {}, `${v.doctor.name}, ${dateTimeIn(v.scheduled_at, zone)} ${zone}, ${modeLabel(v.consult_mode)}`),
    v.problem ? h('p', { class: 'field-error', role: 'alert' }, v.problem) : null,
    h('button', {
      type: 'button',
      class: 'btn btn-quiet',
      'aria-label': `Remove ${v.patient_name}'s visit`,
      onclick: () => removeVisit(i),
    }, 'Remove')))));
}
