// The weekly schedule in the seed's shape (`{monday: {enabled, start, end, breaks?}, ...}`),
// the IANA timezone select and the slot length: shared by the doctor's and the admin's
// screen. Each day may carry breaks (at most MAX_BREAKS, inside the day, not overlapping).

import { h, replace, uid } from './dom.js';
import { allZones, WEEKDAYS } from './time.js';

const DAY_NAMES = {
  monday: 'Monday', tuesday: 'Tuesday', wednesday: 'Wednesday', thursday: 'Thursday',
  friday: 'Friday', saturday: 'Saturday', sunday: 'Sunday',
};

export const SLOT_LENGTHS = [15, 20, 30, 45, 60, 90, 120];

/** Most breaks a day may have (the API's bound). */
export const MAX_BREAKS = 8;

/** Minutes since midnight of "HH:MM". */
export function minutesOf(t) {
  return Number(t.slice(0, 2)) * 60 + Number(t.slice(3, 5));
}

/**
 * An editable list of breaks for one day (`label` names the day, e.g. "Monday"): rows of
 * "<label> break N start/end" with a remove button, and "Add break on <label>". Answers
 * `{element, value(), validate(start, end) -> text | null, inputs()}`.
 */
export function breaksEditor(label, initial = []) {
  let items = initial.map((b) => ({ start: b.start, end: b.end }));
  const list = h('ul', { class: 'break-list', 'aria-label': `Breaks on ${label}` });
  const add = h('button', {
    type: 'button',
    class: 'btn btn-quiet',
    onclick: () => {
      read();
      const last = items[items.length - 1];
      items.push(last ? { start: last.end, end: last.end } : { start: '12:00', end: '13:00' });
      render();
      list.querySelectorAll('input')[2 * (items.length - 1)]?.focus();
    },
  }, `Add break on ${label}`);
  let rows = [];

  function read() {
    items = rows.map((r) => ({ start: r.start.value, end: r.end.value }));
  }

  function render() {
    rows = items.map((b, i) => {
      const n = i + 1;
      const base = uid('break');
      const start = h('input', { type: 'time', id: `${base}-start`, value: b.start, step: '300', required: true });
      const end = h('input', { type: 'time', id: `${base}-end`, value: b.end, step: '300', required: true });
      const remove = h('button', {
        type: 'button',
        class: 'btn btn-quiet',
        onclick: () => {
          read();
          items.splice(i, 1);
          render();
          (list.querySelector('input') ?? add).focus();
        },
      }, `Remove ${label} break ${n}`);
      const li = h('li', { class: 'break-row' },
        h('div', { class: 'time-field' }, h('label', { for: start.id }, `${label} break ${n} start`), start),
        h('div', { class: 'time-field' }, h('label', { for: end.id }, `${label} break ${n} end`), end),
        remove);
      return { start, end, li };
    });
    replace(list, rows.map((r) => r.li));
    add.disabled = rows.length >= MAX_BREAKS;
  }
  render();

  return {
    element: h('div', { class: 'breaks' }, list, add),
    value() {
      read();
      return items.map((b) => ({ start: b.start, end: b.end }));
    },
    /** The first problem with the breaks inside the window `start`..`end`, or null. */
    validate(start, end) {
      const list = this.value();
      if (list.some((b) => !b.start || !b.end)) return `${label}: give every break a start and an end.`;
      const sorted = [...list].sort((a, b) => minutesOf(a.start) - minutesOf(b.start));
      for (const [i, b] of sorted.entries()) {
        if (minutesOf(b.end) <= minutesOf(b.start)) return `${label}: a break must end after it starts.`;
        if (minutesOf(b.start) < minutesOf(start) || minutesOf(b.end) > minutesOf(end)) {
          return `${label}: breaks must lie inside the opening hours.`;
        }
        if (i > 0 && minutesOf(b.start) < minutesOf(sorted[i - 1].end)) return `${label}: breaks must not overlap.`;
      }
      return null;
    },
    setDisabled(disabled) {
      for (const r of rows) {
        r.start.disabled = disabled;
        r.end.disabled = disabled;
      }
    },
  };
}

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
 * The seven days, each a fieldset with "Open", "Start", "End" and its breaks. Answers
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
    const breaks = breaksEditor(name, w.breaks ?? []);
    function sync() {
      start.disabled = !enabled.checked;
      end.disabled = !enabled.checked;
      breaks.setDisabled(!enabled.checked);
      row.classList.toggle('day-closed', !enabled.checked);
    }
    const row = h('fieldset', { class: 'day-row' },
      h('legend', {}, name),
      h('div', { class: 'day-row-fields' },
        h('div', { class: 'check' }, enabled, h('label', { for: enabled.id }, `Open on ${name}`)),
        h('div', { class: 'time-field' }, h('label', { for: start.id }, `${name} start`), start),
        h('div', { class: 'time-field' }, h('label', { for: end.id }, `${name} end`), end)),
      breaks.element,
      error);
    sync();
    return { day, name, enabled, start, end, breaks, error, fieldset: row };
  });

  const element = h('div', { class: 'schedule-editor' }, rows.map((r) => r.fieldset));

  return {
    element,
    value() {
      return Object.fromEntries(rows.map((r) => [r.day, {
        enabled: r.enabled.checked,
        start: r.start.value,
        end: r.end.value,
        breaks: r.breaks.value(),
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
        const minutes = minutesOf;
        if (minutes(r.end.value) <= minutes(r.start.value)) {
          errors.push([`availability_schedule.${r.day}.end`, `${r.name}: the end must be after the start.`]);
        } else if (minutes(r.end.value) - minutes(r.start.value) < slotMinutes) {
          errors.push([`availability_schedule.${r.day}.end`, `${r.name}: the day is shorter than one ${slotMinutes}-minute slot.`]);
        } else {
          const problem = r.breaks.validate(r.start.value, r.end.value);
          if (problem) errors.push([`availability_schedule.${r.day}.breaks`, problem]);
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
