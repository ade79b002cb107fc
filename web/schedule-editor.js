// The weekly schedule in the seed's shape (`{monday: {enabled, start, end}, ...}`), the
// IANA timezone select and the slot length: shared by the doctor's and the admin's screen.

import { h, uid } from './dom.js';
import { allZones, WEEKDAYS } from './time.js';

const DAY_NAMES = {
  monday: 'Monday', tuesday: 'Tuesday', wednesday: 'Wednesday', thursday: 'Thursday',
  friday: 'Friday', saturday: 'Saturday', sunday: 'Sunday',
};

export const SLOT_LENGTHS = [15, 20, 30, 45, 60, 90, 120];

export function defaultSchedule() {
  return Object.fromEntries(WEEKDAYS.map((d, i) => [d, { enabled: i < 5, start: '09:00', end: '17:00' }]));
}

/** A timezone `<select>` with every zone the browser knows (and `value`, if it does not). */
export function timezoneSelect(id, value) {
  return h('select', { id, name: 'timezone' },
    allZones(value).map((z) => h('option', { value: z, selected: z === value }, z)));
}

/** A slot length `<select>` (minutes). */
export function slotSelect(id, value) {
  const values = SLOT_LENGTHS.includes(value) ? SLOT_LENGTHS : [...SLOT_LENGTHS, value].sort((a, b) => a - b);
  return h('select', { id, name: 'slot_minutes' },
    values.map((m) => h('option', { value: String(m), selected: m === value }, `${m} minutes`)));
}

/**
 * The seven days, each a fieldset with "Open", "Start" and "End". Answers
 * `{element, value(), validate(slotMinutes) -> [[field, text]], showErrors(pairs), clearErrors()}`;
 * field names are the API's (`availability_schedule.monday.start`).
 */
export function scheduleEditor(schedule) {
  const rows = WEEKDAYS.map((day) => {
    const w = schedule[day] ?? { enabled: false, start: '09:00', end: '17:00' };
    const base = uid(`day-${day}`);
    const name = DAY_NAMES[day];
    const enabled = h('input', { type: 'checkbox', id: `${base}-on`, checked: w.enabled, onchange: sync });
    const start = h('input', { type: 'time', id: `${base}-start`, value: w.start, step: '300', required: true });
    const end = h('input', { type: 'time', id: `${base}-end`, value: w.end, step: '300', required: true });
    const error = h('p', { class: 'field-error', id: `${base}-error` });
    start.setAttribute('aria-describedby', error.id);
    end.setAttribute('aria-describedby', error.id);
    function sync() {
      start.disabled = !enabled.checked;
      end.disabled = !enabled.checked;
      row.classList.toggle('day-closed', !enabled.checked);
    }
    const row = h('fieldset', { class: 'day-row' },
      h('legend', {}, name),
      h('div', { class: 'day-row-fields' },
        h('div', { class: 'check' }, enabled, h('label', { for: enabled.id }, `Open on ${name}`)),
        h('div', { class: 'time-field' }, h('label', { for: start.id }, `${name} start`), start),
        h('div', { class: 'time-field' }, h('label', { for: end.id }, `${name} end`), end)),
      error);
    sync();
    return { day, name, enabled, start, end, error, fieldset: row };
  });

  const element = h('div', { class: 'schedule-editor' }, rows.map((r) => r.fieldset));

  return {
    element,
    value() {
      return Object.fromEntries(rows.map((r) => [r.day, {
        enabled: r.enabled.checked,
        start: r.start.value,
        end: r.end.value,
      }]));
    },
    validate(slotMinutes) {
      const errors = [];
      for (const r of rows) {
        if (!r.enabled.checked) continue;
        if (!r.start.value || !r.end.value) {
          errors.push([`availability_schedule.${r.day}.start`, `${r.name}: give a start and an end time.`]);
          continue;
        }
        const minutes = (t) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3, 5));
        if (minutes(r.end.value) <= minutes(r.start.value)) {
          errors.push([`availability_schedule.${r.day}.end`, `${r.name}: the end must be after the start.`]);
        } else if (minutes(r.end.value) - minutes(r.start.value) < slotMinutes) {
          errors.push([`availability_schedule.${r.day}.end`, `${r.name}: the day is shorter than one ${slotMinutes}-minute slot.`]);
        }
      }
      return errors;
    },
    /** Shows the errors it knows; answers the others (and the first input to focus). */
    showErrors(pairs) {
      const rest = [];
      let first = null;
      for (const [field, text] of pairs) {
        const m = /^availability_schedule\.(\w+)(?:\.(start|end|enabled))?/.exec(field);
        const r = m && rows.find((x) => x.day === m[1]);
        if (!r) {
          rest.push([field, text]);
          continue;
        }
        r.error.textContent = text;
        const input = m[2] === 'end' ? r.end : r.start;
        input.setAttribute('aria-invalid', 'true');
        first ??= input;
      }
      return { rest, first };
    },
    clearErrors() {
      for (const r of rows) {
        r.error.textContent = '';
        r.start.removeAttribute('aria-invalid');
        r.end.removeAttribute('aria-invalid');
      }
    },
  };
}
