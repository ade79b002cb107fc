// What a patient can do with a consultation from any screen: add it to a calendar, or
// cancel it after confirming.

import { ApiError } from '../api.js';
import { h, message, replace, uid } from '../dom.js';
import { icon } from '../icons.js';

/** Downloads `GET /patient/consultations/{id}/calendar.ics` with the bearer header
 * (fetch, then a Blob behind an object URL: a plain link cannot carry the header). */
export async function downloadCalendar(api, consultation) {
  const blob = await api.patient.calendar(consultation.id);
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: `${consultation.reference}.ics`, class: 'visually-hidden' }, 'Download');
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** An "Add to calendar" button with its own error line. */
export function calendarButton(ctx, consultation) {
  const status = h('span', { class: 'inline-status', role: 'status' });
  const button = h('button', {
    type: 'button',
    class: 'btn',
    'aria-label': `Add to calendar, ${consultation.reference}`,
    onclick: async () => {
      button.disabled = true;
      replace(status);
      try {
        await downloadCalendar(ctx.api, consultation);
        replace(status, 'Calendar file downloaded.');
      } catch (error) {
        replace(status, h('span', { class: 'error-text' }, `The calendar file could not be made: ${error.message}`));
      } finally {
        button.disabled = false;
      }
    },
  }, icon('calendar'), 'Add to calendar');
  return h('span', { class: 'with-status' }, button, status);
}

/** Asks, in a modal dialog, whether to cancel; cancels on yes. Resolves to the updated
 * consultation, or null when kept. Focus returns to `opener`. */
export function confirmCancel(ctx, consultation, describe, opener) {
  return new Promise((resolve) => {
    const titleId = uid('cancel-title');
    const notice = h('div', {});
    let result = null;
    const yes = h('button', {
      type: 'button',
      class: 'btn btn-danger',
      onclick: async () => {
        yes.disabled = true;
        replace(notice);
        try {
          result = (await ctx.api.patient.cancel(consultation.id)).consultation;
          dialog.close();
        } catch (error) {
          yes.disabled = false;
          const text = error instanceof ApiError && error.code === 'not_cancellable'
            ? 'This consultation can no longer be cancelled.'
            : `It could not be cancelled: ${error.message}`;
          replace(notice, message('error', text));
        }
      },
    }, 'Yes, cancel it');
    const no = h('button', { type: 'button', class: 'btn', autofocus: true, onclick: () => dialog.close() }, 'Keep it');
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': titleId, role: 'alertdialog' },
      h('h2', { id: titleId }, 'Cancel this consultation?'),
      h('p', {}, describe),
      h('p', { class: 'muted' }, 'The time becomes free for other patients at once.'),
      notice,
      h('div', { class: 'button-row' }, no, yes));
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (opener?.isConnected) opener.focus();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}
