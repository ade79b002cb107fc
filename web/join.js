// Join details of an in-app session (`GET .../session`), shown to patient and doctor.

import { h } from './dom.js';
import { modeLabel } from './icons.js';
import { browserZone, dateTimeIn } from './time.js';

const SESSION_TEXT = {
  pending: 'Preparing your in-app session…',
  ready: 'Ready to join',
  failed: 'The session could not be prepared. The clinic has been told and will contact you.',
  not_required: 'No in-app session is needed for this consultation.',
};

export function sessionText(status) {
  return SESSION_TEXT[status] ?? status;
}

/** A description list of the join details (the client token itself stays out of view). */
export function joinDetails(answer) {
  const s = answer.session;
  if (!s) return h('p', { class: 'muted' }, sessionText(answer.session_status));
  const zone = browserZone();
  const rows = [
    ['Mode', `${modeLabel(s.mode)}${s.audio_only ? ' (audio only)' : ''}`],
    ['Provider', s.provider],
    s.session_id ? ['Session', s.session_id] : null,
    s.conversation_id ? ['Conversation', s.conversation_id] : null,
    s.user_name ? ['Your chat name', s.user_name] : null,
    ['Your role', s.role],
    ['Valid until', `${dateTimeIn(s.expires_at, zone)} ${zone}`],
  ].filter(Boolean);
  return h('div', { class: 'join' },
    h('dl', { class: 'facts' }, rows.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', { class: 'break' }, v)))),
    h('p', { class: 'muted' }, 'Join from this app at the time of your consultation with these details.'));
}
