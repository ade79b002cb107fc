// Sign-in. In the development profile: the demo users (`GET /dev/users`) and
// `POST /dev/sign-in`. In production those routes are 404: the clinic platform opens this
// page with a token (URL fragment or postMessage), so the screen says to start there.

import { ApiError } from './api.js';
import { h, loading, message, replace, uid } from './dom.js';

export function mount(root, ctx) {
  ctx.setTitle('Sign in');
  const flash = ctx.takeFlash();
  const body = h('div', { class: 'stack' }, loading('Loading sign-in options…'));
  replace(root,
    h('section', { class: 'signin card', 'aria-labelledby': 'signin-title' },
      h('h1', { id: 'signin-title' }, 'Sign in'),
      h('p', { class: 'lead' }, 'Book and manage telehealth consultations.'),
      flash ? message('warning', flash) : null,
      body));

  let alive = true;
  load();

  async function load() {
    let users;
    try {
      users = (await ctx.api.dev.users()).users;
    } catch (error) {
      if (!alive) return;
      if (error instanceof ApiError && error.status === 404) {
        replace(body,
          message('info',
            h('strong', {}, 'Open this page from your clinic platform. '),
            'It signs you in and brings you here; this page does not ask for passwords.'));
      } else {
        replace(body,
          message('error', `Sign-in options could not be loaded: ${error.message}`),
          h('button', { type: 'button', class: 'btn', onclick: load }, 'Try again'));
      }
      return;
    }
    if (!alive) return;
    const status = h('div', { class: 'signin-status' });
    const choose = (role, label, people, describe) => {
      const selectId = uid(`signin-${role}`);
      const select = people.length > 1
        ? h('select', { id: selectId, name: role },
          people.map((u) => h('option', { value: String(u.sub) }, describe(u))))
        : null;
      const button = h('button', { type: 'submit', class: 'btn btn-primary' }, `Sign in as ${role}`);
      const form = h('form', {
        class: 'signin-choice',
        onsubmit: async (event) => {
          event.preventDefault();
          const sub = select ? Number(select.value) : people[0]?.sub;
          button.disabled = true;
          replace(status);
          try {
            const answer = await ctx.api.dev.signIn(role, sub);
            ctx.signIn(answer.token, answer.name);
          } catch (error) {
            button.disabled = false;
            replace(status, message('error', `Could not sign in: ${error.message}`));
          }
        },
      },
      h('h2', {}, label),
      select ? h('label', { for: selectId }, `Demo ${role}`) : null,
      select,
      !select && people[0] ? h('p', { class: 'muted' }, describe(people[0])) : null,
      button);
      return form;
    };
    const of = (role) => users.filter((u) => u.role === role);
    replace(body,
      h('p', { class: 'muted' },
        'Development sign-in: choose a demo user. In production the clinic platform signs you in.'),
      h('div', { class: 'signin-grid' },
        choose('patient', 'Patient', of('patient'), (u) => `${u.name} (patient ${u.sub})`),
        choose('doctor', 'Doctor', of('doctor'), (u) => (u.detail ? `${u.name}, ${u.detail}` : u.name)),
        choose('admin', 'Clinic admin', of('admin'), (u) => u.name)),
      status);
  }

  return {
    unmount() {
      alive = false;
    },
  };
}
