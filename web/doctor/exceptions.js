// The doctor's exceptions to the weekly schedule and their booking rules, as the API has
// them: `date_overrides` ({"YYYY-MM-DD": {enabled, start?, end?}}: a closed date or other
// hours on one date) and `policy` ({min_notice_minutes, booking_window_days, max_per_day}).

import { h, replace, uid } from '../dom.js';
import { minutesOf } from '../schedule-editor.js';
import { addDays } from '../time.js';

/** Most date overrides at once (the API's bound). */
const MAX_OVERRIDES = 366;

/**
 * Date overrides: rows of "Date N" (a date), "Date N hours" (closed all day / other
 * hours), "Date N start/end" and "Remove date N"; "Add date" adds one for `today + 1`.
 * Answers `{element, value(), validate(slotMinutes), showErrors(pairs), clearErrors()}`.
 */
export function overridesEditor(overrides, today) {
  let items = Object.entries(overrides ?? {})
    .filter(([date]) => date >= today)
    .map(([date, o]) => ({
      date,
      enabled: o.enabled,
      start: o.start ?? '09:00',
      end: o.end ?? '17:00',
      breaks: o.breaks ?? [],
    }));
  let rows = [];
  const list = h('ul', { class: 'override-list', 'aria-label': 'Date overrides' });
  const empty = h('p', { class: 'muted' });
  const add = h('button', {
    type: 'button',
    class: 'btn',
    onclick: () => {
      read();
      const taken = new Set(items.map((i) => i.date));
      let date = addDays(today, 1);
      while (taken.has(date)) date = addDays(date, 1);
      items.push({ date, enabled: false, start: '09:00', end: '17:00', breaks: [] });
      render();
      rows[rows.length - 1].date.focus();
    },
  }, 'Add date');

  function read() {
    items = rows.map((r, i) => ({
      date: r.date.value,
      enabled: r.hours.value === 'open',
      start: r.start.value,
      end: r.end.value,
      breaks: items[i]?.breaks ?? [],
    }));
  }

  function render() {
    rows = items.map((o, i) => {
      const n = i + 1;
      const base = uid('override');
      const date = h('input', { type: 'date', id: `${base}-date`, value: o.date, min: today, required: true });
      const hours = h('select', { id: `${base}-hours`, onchange: sync },
        h('option', { value: 'closed', selected: !o.enabled }, 'Closed all day'),
        h('option', { value: 'open', selected: o.enabled }, 'Other hours'));
      const start = h('input', { type: 'time', id: `${base}-start`, value: o.start, step: '300' });
      const end = h('input', { type: 'time', id: `${base}-end`, value: o.end, step: '300' });
      const error = h('p', { class: 'field-error', id: `${base}-error` });
      for (const input of [date, hours, start, end]) input.setAttribute('aria-describedby', error.id);
      const remove = h('button', {
        type: 'button',
        class: 'btn btn-quiet',
        onclick: () => {
          read();
          items.splice(i, 1);
          render();
          (rows[Math.min(i, rows.length - 1)]?.date ?? add).focus();
        },
      }, `Remove date ${n}`);
      const startField = h('div', { class: 'time-field' }, h('label', { for: start.id }, `Date ${n} start`), start);
      const endField = h('div', { class: 'time-field' }, h('label', { for: end.id }, `Date ${n} end`), end);
      const li = h('li', {},
        h('fieldset', { class: 'day-row override-row' },
          h('legend', {}, `Date ${n}`),
          h('div', { class: 'override-fields' },
            h('div', { class: 'time-field' }, h('label', { for: date.id }, `Date ${n}`), date),
            h('div', { class: 'time-field' }, h('label', { for: hours.id }, `Date ${n} hours`), hours),
            startField,
            endField,
            remove),
          error));
      function sync() {
        const open = hours.value === 'open';
        start.disabled = !open;
        end.disabled = !open;
        // Only the times are off on a closed date; the date and its choice stay editable.
        for (const f of [startField, endField]) f.classList.toggle('time-off', !open);
      }
      sync();
      return { date, hours, start, end, error, li };
    });
    replace(list, rows.map((r) => r.li));
    empty.textContent = rows.length ? '' : 'No dates: the weekly schedule applies every day.';
    add.disabled = rows.length >= MAX_OVERRIDES;
  }
  render();

  return {
    element: h('div', { class: 'stack' }, empty, list, h('div', { class: 'button-row' }, add)),
    value() {
      read();
      return Object.fromEntries(items.map((o) => [o.date, o.enabled
        ? { enabled: true, start: o.start, end: o.end, breaks: o.breaks }
        : { enabled: false }]));
    },
    validate(slotMinutes) {
      read();
      const errors = [];
      const seen = new Set();
      items.forEach((o, i) => {
        const at = (text) => errors.push([i, text]);
        if (!o.date) return at(`Date ${i + 1}: choose a date.`);
        if (seen.has(o.date)) return at(`Date ${i + 1}: ${o.date} is listed twice.`);
        seen.add(o.date);
        if (!o.enabled) return null;
        if (!o.start || !o.end) return at(`Date ${i + 1}: give a start and an end time.`);
        if (minutesOf(o.end) - minutesOf(o.start) < slotMinutes) {
          return at(`Date ${i + 1}: the end must be at least one ${slotMinutes}-minute slot after the start.`);
        }
        return null;
      });
      return errors.map(([i, text]) => [`date_overrides.${items[i].date || i}`, text]);
    },
    /** Shows the errors on `date_overrides.*`; answers the others and the input to focus. */
    showErrors(pairs) {
      const rest = [];
      let first = null;
      for (const [field, text] of pairs) {
        const m = /^date_overrides(?:\.(\d{4}-\d{2}-\d{2}))?/.exec(field);
        if (!m) {
          rest.push([field, text]);
          continue;
        }
        const row = rows.find((r) => r.date.value === m[1]) ?? rows[0];
        if (!row) {
          rest.push([field, text]);
          continue;
        }
        row.error.textContent = text;
        row.date.setAttribute('aria-invalid', 'true');
        first ??= row.date;
      }
      return { rest, first };
    },
    clearErrors() {
      for (const r of rows) {
        r.error.textContent = '';
        r.date.removeAttribute('aria-invalid');
      }
    },
  };
}

/**
 * The booking rules: "Minimum notice (minutes)", "Booking window (days)" and "Most
 * consultations per day" (empty: no limit). Answers `{element, value(), validate(),
 * showErrors(pairs), clearErrors()}`.
 */
export function policyEditor(policy) {
  const p = policy ?? {};
  const field = (key, label, hint, attrs, value) => {
    const id = uid(key);
    const input = h('input', { type: 'number', id, inputmode: 'numeric', step: '1', value: value ?? '', ...attrs });
    const hintEl = h('p', { class: 'hint', id: `${id}-hint` }, hint);
    const error = h('p', { class: 'field-error', id: `${id}-error` });
    input.setAttribute('aria-describedby', `${hintEl.id} ${error.id}`);
    return { key, label, input, error, attrs, element: h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl, error) };
  };
  const fields = [
    field('min_notice_minutes', 'Minimum notice (minutes)', 'How long before a consultation patients may still book it. 0 to 43200.',
      { min: '0', max: '43200', required: true }, String(p.min_notice_minutes ?? 0)),
    field('booking_window_days', 'Booking window (days)', 'How far ahead patients may book. 1 to 730; empty for no limit.',
      { min: '1', max: '730' }, p.booking_window_days == null ? '' : String(p.booking_window_days)),
    field('max_per_day', 'Most consultations per day', 'Further bookings of a day are refused once it has this many. 1 to 200; empty for no limit.',
      { min: '1', max: '200' }, p.max_per_day == null ? '' : String(p.max_per_day)),
  ];
  const number = (f) => (f.input.value.trim() === '' ? null : Number(f.input.value));
  return {
    element: h('div', { class: 'two-fields' }, fields.map((f) => f.element)),
    value() {
      const [notice, window, max] = fields.map(number);
      return { min_notice_minutes: notice ?? 0, booking_window_days: window, max_per_day: max };
    },
    validate() {
      const errors = [];
      for (const f of fields) {
        const v = number(f);
        if (v === null) continue;
        if (!Number.isInteger(v) || v < Number(f.attrs.min) || v > Number(f.attrs.max)) {
          errors.push([`policy.${f.key}`, `${f.label}: a whole number from ${f.attrs.min} to ${f.attrs.max}.`]);
        }
      }
      return errors;
    },
    showErrors(pairs) {
      const rest = [];
      let first = null;
      for (const [name, text] of pairs) {
        const f = fields.find((x) => name === `policy.${x.key}`);
        if (!f) {
          rest.push([name, text]);
          continue;
        }
        f.error.textContent = text;
        f.input.setAttribute('aria-invalid', 'true');
        first ??= f.input;
      }
      return { rest, first };
    },
    clearErrors() {
      for (const f of fields) {
        f.error.textContent = '';
        f.input.removeAttribute('aria-invalid');
      }
    },
  };
}
