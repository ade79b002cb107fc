// The doctor's screen (`#/doctor`): taking bookings on or off, the weekly schedule
// editor (timezone, slot length, seven days with breaks), date overrides and booking rules,
// and their consultations over a date range with join details (flagged when a schedule
// change left them outside the schedule).

import { ApiError } from '../api.js';
import { h, loading, message, replace, uid } from '../dom.js';
import { icon, modeLabel } from '../icons.js';
import { joinDetails, sessionText } from '../join.js';
import { scheduleEditor, slotSelect, timezoneSelect } from '../schedule-editor.js';
import { addDays, browserZone, dateTimeIn, todayIn } from '../time.js';
import { statusText } from '../patient/confirmation.js';
import { overridesEditor, policyEditor } from './exceptions.js';

export function mount(root, ctx) {
  ctx.setTitle('My schedule');
  const body = h('div', { class: 'stack', 'aria-busy': 'true' }, loading('Loading your profile…'));
  replace(root,
    h('div', { class: 'screen-head' }, h('h1', {}, 'My schedule')),
    body);

  let alive = true;
  let profile = null;
  load();

  async function load() {
    try {
      profile = (await ctx.api.doctor.profile()).doctor;
    } catch (error) {
      if (!alive) return;
      body.removeAttribute('aria-busy');
      replace(body,
        message('error', `Your profile could not be loaded: ${error.message}`),
        h('button', { type: 'button', class: 'btn', onclick: load }, 'Try again'));
      return;
    }
    if (!alive) return;
    body.removeAttribute('aria-busy');
    replace(body,
      h('p', { class: 'lead' }, `${profile.name} · ${profile.specialty}`),
      statusSection(),
      scheduleSection(),
      consultationsSection());
  }

  function statusSection() {
    const notice = h('div', {});
    const id = uid('available');
    const toggle = h('input', {
      type: 'checkbox', role: 'switch', id, checked: profile.is_available,
      onchange: async () => {
        const want = toggle.checked;
        toggle.disabled = true;
        replace(notice);
        try {
          profile = (await ctx.api.doctor.setAvailable(want)).doctor;
          replace(notice, message('success', want
            ? 'You are taking new bookings.'
            : 'You are not taking new bookings. Booked consultations stay as they are.'));
        } catch (error) {
          toggle.checked = !want;
          replace(notice, message('error', `Could not change it: ${error.message}`));
        } finally {
          toggle.disabled = false;
        }
      },
    });
    return h('section', { class: 'card stack', 'aria-labelledby': 'status-title' },
      h('h2', { id: 'status-title' }, 'Bookings'),
      h('p', {}, profile.is_approved
        ? h('span', { class: 'badge badge-ok' }, 'Approved by the clinic')
        : h('span', { class: 'badge badge-wait' }, 'Awaiting approval by the clinic'),
      profile.is_approved ? null : ' Patients see you once the clinic approves you.'),
      h('div', { class: 'switch' }, toggle, h('label', { for: id }, 'Taking new bookings')),
      notice);
  }

  function scheduleSection() {
    const notice = h('div', {});
    const tzId = uid('tz');
    const slotId = uid('slot');
    const tz = timezoneSelect(tzId, profile.timezone);
    const slot = slotSelect(slotId, profile.slot_minutes);
    const tzError = h('p', { class: 'field-error', id: uid('tz-error') });
    tz.setAttribute('aria-describedby', tzError.id);
    const editor = scheduleEditor(profile.availability_schedule);
    const overrides = overridesEditor(profile.date_overrides, todayIn(profile.timezone));
    const policy = policyEditor(profile.policy);
    const parts = [editor, overrides, policy];
    const save = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save schedule');
    const form = h('form', {
      class: 'stack',
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        for (const part of parts) part.clearErrors();
        tzError.textContent = '';
        replace(notice);
        const slotMinutes = Number(slot.value);
        const errors = [...editor.validate(slotMinutes), ...overrides.validate(slotMinutes), ...policy.validate()];
        if (errors.length) {
          const first = showAll(errors);
          replace(notice, message('error', 'Please correct the marked fields.'));
          first?.focus();
          return;
        }
        save.disabled = true;
        try {
          profile = (await ctx.api.doctor.saveSchedule({
            timezone: tz.value,
            slot_minutes: slotMinutes,
            availability_schedule: editor.value(),
            date_overrides: overrides.value(),
            policy: policy.value(),
          })).doctor;
          replace(notice, message('success', 'Schedule saved. Patients see the new times at once; booked consultations are kept.'));
        } catch (error) {
          if (error instanceof ApiError && Object.keys(error.errors).length) {
            const first = showAll(Object.entries(error.errors).map(([f, r]) => [f, r.join(' ')]));
            replace(notice, message('error', error.message));
            (first ?? (tzError.textContent ? tz : null))?.focus();
          } else {
            replace(notice, message('error', `The schedule could not be saved: ${error.message}`));
          }
        } finally {
          save.disabled = false;
        }
      },
    },
    h('div', { class: 'two-fields' },
      h('div', { class: 'field' }, h('label', { for: tzId }, 'Timezone'), tz, tzError),
      h('div', { class: 'field' }, h('label', { for: slotId }, 'Consultation length'), slot)),
    h('p', { class: 'muted' }, 'Start and end are local times in the timezone above.'),
    editor.element,
    h('fieldset', { class: 'group' },
      h('legend', {}, 'Date overrides'),
      h('p', { class: 'muted' }, 'A closed date (a day off, a holiday) or other hours on one date; it replaces the weekly hours on that date.'),
      overrides.element),
    h('fieldset', { class: 'group' },
      h('legend', {}, 'Booking rules'),
      policy.element),
    notice,
    h('div', { class: 'button-row' }, save));
    /** Shows each error next to its field; answers the first input to focus. */
    function showAll(pairs) {
      let rest = pairs;
      let first = null;
      for (const part of parts) {
        const shown = part.showErrors(rest);
        rest = shown.rest;
        first ??= shown.first;
      }
      for (const [f, text] of rest) if (f === 'timezone') tzError.textContent = text;
      return first;
    }

    return h('section', { class: 'card stack', 'aria-labelledby': 'week-title' },
      h('h2', { id: 'week-title' }, 'Weekly schedule'),
      form);
  }

  function consultationsSection() {
    const zone = browserZone();
    const today = todayIn(profile.timezone);
    const fromId = uid('from');
    const toId = uid('to');
    const from = h('input', { type: 'date', id: fromId, value: today, required: true });
    const to = h('input', { type: 'date', id: toId, value: addDays(today, 13), required: true });
    const list = h('div', {});
    const show = h('button', { type: 'submit', class: 'btn' }, 'Show consultations');

    async function refresh() {
      if (!from.value || !to.value || to.value < from.value) {
        replace(list, message('error', 'Choose a start date and an end date on or after it.'));
        return;
      }
      replace(list, loading('Loading consultations…'));
      let items;
      try {
        items = (await ctx.api.doctor.consultations(from.value, addDays(to.value, 1))).consultations;
      } catch (error) {
        if (alive) replace(list, message('error', `Your consultations could not be loaded: ${error.message}`));
        return;
      }
      if (!alive) return;
      replace(list, items.length
        ? h('ul', { class: 'consultation-list', 'aria-label': 'Your consultations' }, items.map((c) => item(c, zone)))
        : h('p', { class: 'empty' }, 'No consultations in these dates.'));
    }

    const form = h('form', {
      class: 'range-form',
      onsubmit: (event) => {
        event.preventDefault();
        refresh();
      },
    },
    h('div', { class: 'field' }, h('label', { for: fromId }, 'From'), from),
    h('div', { class: 'field' }, h('label', { for: toId }, 'Up to and including'), to),
    show);
    refresh();
    return h('section', { class: 'card stack', 'aria-labelledby': 'cons-title' },
      h('h2', { id: 'cons-title' }, 'My consultations'),
      h('p', { class: 'muted' }, `Dates are in your timezone, ${profile.timezone}.`),
      form,
      list);
  }

  function item(c, zone) {
    const headingId = `dc-${c.id}`;
    const joinBox = h('div', {});
    const local = `${dateTimeIn(c.scheduled_at, profile.timezone)} ${profile.timezone}`;
    const medical = [
      ['Reason', c.reason], ['Symptoms', c.symptoms], ['Medical history', c.medical_history],
      ['Allergies', c.allergies], ['Current medications', c.current_medications],
    ].filter(([, v]) => v);
    const active = c.status === 'scheduled' || c.status === 'pending';
    const join = active && c.session_status === 'ready' ? h('button', {
      type: 'button',
      class: 'btn',
      'aria-expanded': 'false',
      'aria-label': `Join details for ${c.reference}`,
      onclick: async () => {
        if (join.getAttribute('aria-expanded') === 'true') {
          join.setAttribute('aria-expanded', 'false');
          replace(joinBox);
          return;
        }
        join.setAttribute('aria-expanded', 'true');
        replace(joinBox, loading('Loading join details…'));
        try {
          replace(joinBox, joinDetails(await ctx.api.doctor.session(c.id)));
        } catch (error) {
          replace(joinBox, message('error', `Join details could not be loaded: ${error.message}`));
        }
      },
    }, 'Join details') : null;
    return h('li', { class: 'card consultation' },
      h('article', { 'aria-labelledby': headingId },
        h('h3', { id: headingId }, `${local}`),
        h('dl', { class: 'facts' },
          zone !== profile.timezone
            ? h('div', {}, h('dt', {}, 'In this browser'), h('dd', {}, `${dateTimeIn(c.scheduled_at, zone)} ${zone}`))
            : null,
          h('div', {}, h('dt', {}, 'Patient'), h('dd', {}, `Patient ${c.patient_id}`)),
          h('div', {}, h('dt', {}, 'Reference'), h('dd', {}, c.reference)),
          h('div', {}, h('dt', {}, 'Mode'), h('dd', { class: 'mode-inline' }, icon(c.consult_mode), modeLabel(c.consult_mode))),
          h('div', {}, h('dt', {}, 'Status'), h('dd', {}, statusText(c.status),
            c.outside_schedule ? [' ', h('span', { class: 'badge badge-wait' }, 'Outside your schedule')] : null)),
          active ? h('div', {}, h('dt', {}, 'Session'), h('dd', {}, sessionText(c.session_status))) : null),
        medical.length
          ? h('details', {},
            h('summary', {}, 'Medical information'),
            h('dl', { class: 'facts facts-wide' }, medical.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', { class: 'prewrap' }, v)))))
          : null,
        join ? h('div', { class: 'button-row' }, join) : null,
        joinBox));
  }

  return {
    unmount() {
      alive = false;
    },
  };
}
