// The clinic admin's screen (`#/admin`): add a doctor (name, specialty, timezone, slot
// length, weekly schedule), approve doctors, and see every doctor with their state.

import { ApiError } from '../api.js';
import { h, loading, message, replace, uid } from '../dom.js';
import { defaultSchedule, scheduleEditor, slotSelect, timezoneSelect } from '../schedule-editor.js';
import { browserZone } from '../time.js';

export function mount(root, ctx) {
  ctx.setTitle('Doctors');
  const listNotice = h('div', {});
  const list = h('div', { 'aria-busy': 'true' }, loading('Loading doctors…'));
  replace(root,
    h('div', { class: 'screen-head' },
      h('h1', {}, 'Doctors'),
      h('p', { class: 'lead' }, 'Add doctors, approve them for booking, and see their state.')),
    h('div', { class: 'admin-grid' },
      createSection(),
      h('section', { class: 'card stack', 'aria-labelledby': 'all-title' },
        h('h2', { id: 'all-title' }, 'All doctors'),
        listNotice,
        list)));

  let alive = true;
  load();

  async function load() {
    let doctors;
    try {
      doctors = (await ctx.api.admin.doctors()).doctors;
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
    const pending = doctors.filter((d) => !d.is_approved);
    // Those awaiting approval first, then by name.
    doctors.sort((a, b) => (a.is_approved - b.is_approved) || a.name.localeCompare(b.name));
    replace(list,
      h('p', { class: 'muted' }, `${doctors.length} doctors, ${pending.length} awaiting approval.`),
      doctors.length
        ? h('ul', { class: 'admin-list', 'aria-label': 'Doctors' }, doctors.map(row))
        : h('p', { class: 'empty' }, 'No doctors yet. Add the first one.'));
  }

  function row(d) {
    const headingId = `admin-doctor-${d.id}`;
    const approve = d.is_approved ? null : h('button', {
      type: 'button',
      class: 'btn btn-primary',
      'aria-label': `Approve ${d.name}`,
      onclick: async () => {
        approve.disabled = true;
        try {
          await ctx.api.admin.approve(d.id);
        } catch (error) {
          approve.disabled = false;
          replace(listNotice, message('error', `${d.name} could not be approved: ${error.message}`));
          return;
        }
        replace(listNotice, message('success', `${d.name} is approved${d.is_available ? ' and patients can book them now' : ''}.`));
        await load();
        listNotice.querySelector('[role="status"]')?.setAttribute('tabindex', '-1');
        listNotice.querySelector('[role="status"]')?.focus();
      },
    }, 'Approve');
    return h('li', { class: 'admin-doctor' },
      h('article', { 'aria-labelledby': headingId },
        h('div', { class: 'admin-doctor-head' },
          h('h3', { id: headingId }, d.name),
          h('span', { class: 'state-badges' },
            d.is_approved
              ? h('span', { class: 'badge badge-ok' }, 'Approved')
              : h('span', { class: 'badge badge-wait' }, 'Awaiting approval'),
            ' ',
            d.is_available
              ? h('span', { class: 'badge badge-ok' }, 'Taking bookings')
              : h('span', { class: 'badge badge-past' }, 'Not taking bookings'))),
        h('p', { class: 'muted' }, `${d.specialty} · ${d.timezone} · ${d.slot_minutes}-minute slots · id ${d.id}`),
        approve));
  }

  function createSection() {
    const notice = h('div', {});
    const ids = { name: uid('name'), specialty: uid('specialty'), tz: uid('tz'), slot: uid('slot') };
    const errors = { name: h('p', { class: 'field-error', id: uid('e') }), specialty: h('p', { class: 'field-error', id: uid('e') }), timezone: h('p', { class: 'field-error', id: uid('e') }) };
    const name = h('input', { id: ids.name, name: 'name', required: true, autocomplete: 'off', 'aria-describedby': errors.name.id, placeholder: 'Dr. Jane Doe' });
    const specialty = h('input', { id: ids.specialty, name: 'specialty', required: true, autocomplete: 'off', 'aria-describedby': errors.specialty.id });
    const tz = timezoneSelect(ids.tz, browserZone());
    tz.setAttribute('aria-describedby', errors.timezone.id);
    const slot = slotSelect(ids.slot, 30);
    let editor = scheduleEditor(defaultSchedule());
    const editorSlot = h('div', {}, editor.element);
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create doctor');
    const inputs = { name, specialty, timezone: tz };

    const form = h('form', {
      class: 'stack',
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        replace(notice);
        editor.clearErrors();
        for (const [k, e] of Object.entries(errors)) {
          e.textContent = '';
          inputs[k].removeAttribute('aria-invalid');
        }
        const problems = [];
        if (!name.value.trim()) problems.push(['name', 'Give the doctor’s name.']);
        if (!specialty.value.trim()) problems.push(['specialty', 'Give the specialty.']);
        problems.push(...editor.validate(Number(slot.value)));
        if (problems.length) {
          show(problems);
          return;
        }
        submit.disabled = true;
        try {
          const { doctor } = await ctx.api.admin.createDoctor({
            name: name.value.trim(),
            specialty: specialty.value.trim(),
            timezone: tz.value,
            slot_minutes: Number(slot.value),
            availability_schedule: editor.value(),
          });
          replace(notice, message('success', `${doctor.name} was added and is awaiting approval.`));
          name.value = '';
          specialty.value = '';
          editor = scheduleEditor(defaultSchedule());
          replace(editorSlot, editor.element);
          load();
        } catch (error) {
          if (error instanceof ApiError && Object.keys(error.errors).length) {
            show(Object.entries(error.errors).map(([f, r]) => [f, r.join(' ')]), error.message);
          } else {
            replace(notice, message('error', `The doctor could not be added: ${error.message}`));
          }
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('div', { class: 'field' }, h('label', { for: ids.name }, 'Name'), name, errors.name),
    h('div', { class: 'field' }, h('label', { for: ids.specialty }, 'Specialty'), specialty, errors.specialty),
    h('div', { class: 'two-fields' },
      h('div', { class: 'field' }, h('label', { for: ids.tz }, 'Timezone'), tz, errors.timezone),
      h('div', { class: 'field' }, h('label', { for: ids.slot }, 'Consultation length'), slot)),
    h('h3', {}, 'Weekly schedule'),
    h('p', { class: 'muted' }, 'Local times in the doctor’s timezone.'),
    editorSlot,
    notice,
    h('div', { class: 'button-row' }, submit));

    function show(problems, summary) {
      const { rest, first } = editor.showErrors(problems);
      let focus = null;
      for (const [field, text] of rest) {
        if (errors[field]) {
          errors[field].textContent = text;
          inputs[field].setAttribute('aria-invalid', 'true');
          focus ??= inputs[field];
        }
      }
      replace(notice, message('error', summary ?? 'Please correct the marked fields.'));
      (focus ?? first)?.focus();
    }

    return h('section', { class: 'card stack', 'aria-labelledby': 'new-title' },
      h('h2', { id: 'new-title' }, 'Add a doctor'),
      form);
  }

  return {
    unmount() {
      alive = false;
    },
  };
}
