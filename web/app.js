// The shell: who is signed in, the main navigation, and the hash router that mounts one
// screen module at a time. The hash keeps the screen (`#/doctors/2/2026-12-03`,
// `#/consultations`, `#/doctor`, `#/admin`), so a reload restores it.

import * as api from './api.js';
import { h, hidden, replace } from './dom.js';
import { icon } from './icons.js';
import {
  clearSession, listenForHostToken, loadSession, saveSession, sessionFromToken,
  takeTokenFromFragment,
} from './session.js';
import * as signIn from './signin.js';
import * as doctors from './patient/doctors.js';
import * as consultations from './patient/consultations.js';
import * as confirmation from './patient/confirmation.js';
import * as inbox from './inbox.js';
import * as doctorSchedule from './doctor/schedule.js';
import * as adminDoctors from './admin/doctors.js';

const ROUTES = [
  { name: 'signin', pattern: /^\/signin$/, screen: signIn, roles: null },
  {
    name: 'doctors',
    pattern: /^\/doctors(?:\/(\d+)(?:\/(\d{4}-\d{2}-\d{2}))?)?$/,
    screen: doctors,
    roles: ['patient'],
    params: (m) => ({ doctorId: m[1] ? Number(m[1]) : null, date: m[2] ?? null }),
  },
  { name: 'consultations', pattern: /^\/consultations$/, screen: consultations, roles: ['patient'] },
  {
    name: 'consultation',
    pattern: /^\/consultations\/(\d+)$/,
    screen: confirmation,
    roles: ['patient'],
    params: (m) => ({ id: Number(m[1]) }),
  },
  { name: 'inbox', pattern: /^\/inbox$/, screen: inbox, roles: ['patient', 'doctor'] },
  { name: 'doctor', pattern: /^\/doctor$/, screen: doctorSchedule, roles: ['doctor'] },
  { name: 'admin', pattern: /^\/admin$/, screen: adminDoctors, roles: ['admin'] },
];

const HOME = { patient: '/doctors', doctor: '/doctor', admin: '/admin' };

const NAV = {
  patient: [
    { route: 'doctors', href: '#/doctors', label: 'Find a doctor' },
    { route: 'consultations', href: '#/consultations', label: 'My consultations', also: ['consultation'] },
    { route: 'inbox', href: '#/inbox', label: 'Inbox', unread: true },
  ],
  doctor: [
    { route: 'doctor', href: '#/doctor', label: 'My schedule' },
    { route: 'inbox', href: '#/inbox', label: 'Inbox', unread: true },
  ],
  admin: [{ route: 'admin', href: '#/admin', label: 'Doctors' }],
};

const ROLE_NAMES = { patient: 'Patient', doctor: 'Doctor', admin: 'Clinic admin' };

const UNREAD_POLL_MS = 20000;

let session = null;
let current = null; // {route, screen instance}
let flash = null; // a message for the sign-in screen
let unread = 0;
let unreadTimer = null;

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const announcer = document.getElementById('announcer');

function currentPath() {
  const hash = location.hash.replace(/^#/, '');
  return hash.startsWith('/') ? hash : '';
}

export function navigate(path, { replaceEntry = false } = {}) {
  const target = `#${path}`;
  if (location.hash === target) {
    render();
  } else if (replaceEntry) {
    history.replaceState(null, '', target);
    render();
  } else {
    location.hash = target;
  }
}

function announce(text) {
  announcer.textContent = '';
  // A fresh text node after a tick is announced even when it repeats.
  setTimeout(() => {
    announcer.textContent = text;
  }, 50);
}

function setTitle(text) {
  document.title = `${text} · Consult Scheduler`;
}

function startSession(token, name) {
  const next = sessionFromToken(token, name);
  if (!next) {
    flash = 'That sign-in token is not valid or has expired. Please sign in again.';
    return false;
  }
  session = next;
  saveSession(session);
  api.setToken(session.token);
  flash = null;
  refreshUnread();
  return true;
}

function signOut(message = null) {
  clearSession();
  session = null;
  api.setToken(null);
  flash = message;
  unread = 0;
  clearInterval(unreadTimer);
  unreadTimer = null;
  navigate('/signin');
}

async function refreshUnread() {
  if (!session || session.role === 'admin') return;
  if (!unreadTimer) unreadTimer = setInterval(refreshUnread, UNREAD_POLL_MS);
  try {
    const answer = await api.inbox.list({ unread_only: true, limit: 500 });
    unread = answer.notifications.length;
  } catch {
    return; // The count stays as it was; a 401 signs out through the handler.
  }
  renderNav();
}

function renderNav() {
  const routeName = current?.route.name;
  if (!session) {
    replace(nav);
    replace(who);
    return;
  }
  const items = NAV[session.role].map((item) => {
    const active = item.route === routeName || item.also?.includes(routeName);
    // "Inbox, 2 unread": the visible count with hidden connecting words.
    const count = item.unread && unread > 0
      ? [hidden(', '), h('span', { class: 'count' }, String(unread)), hidden(' unread')]
      : null;
    return h('li', {},
      h('a', { href: item.href, 'aria-current': active ? 'page' : null },
        item.unread ? icon('bell') : null, item.label, count));
  });
  replace(nav, h('ul', {}, items));
  replace(who,
    h('span', { class: 'who-name' },
      h('span', { class: 'who-role' }, ROLE_NAMES[session.role]),
      ' ',
      session.name || `#${session.sub}`),
    h('button', { type: 'button', class: 'btn btn-quiet', onclick: () => signOut() }, 'Sign out'));
}

const context = {
  get session() {
    return session;
  },
  api,
  navigate,
  announce,
  setTitle,
  refreshUnread,
  signIn(token, name) {
    if (startSession(token, name)) navigate(HOME[session.role]);
    else render();
  },
  takeFlash() {
    const text = flash;
    flash = null;
    return text;
  },
};

function resolve(path) {
  for (const route of ROUTES) {
    const match = route.pattern.exec(path);
    if (match) return { route, params: route.params ? route.params(match) : {} };
  }
  return null;
}

function render() {
  const path = currentPath();
  const found = resolve(path);
  if (!session) {
    if (found?.route.name !== 'signin') {
      navigate('/signin', { replaceEntry: true });
      return;
    }
  } else if (!found || (found.route.roles && !found.route.roles.includes(session.role))
      || found.route.name === 'signin') {
    navigate(HOME[session.role], { replaceEntry: true });
    return;
  }
  if (current && current.route === found.route && current.instance.update?.(found.params)) {
    renderNav();
    return;
  }
  current?.instance.unmount?.();
  const container = h('div', { class: `screen screen-${found.route.name}` });
  replace(main, container);
  current = { route: found.route, instance: {} };
  current.instance = found.route.screen.mount(container, context, found.params) ?? {};
  renderNav();
  // Move focus to the new screen's heading, so keyboard and screen-reader users start there.
  const heading = container.querySelector('h1');
  if (heading && !container.querySelector('dialog[open]')) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
}

function start() {
  api.setUnauthorizedHandler(() => {
    if (session) signOut('Your session has ended. Please sign in again.');
  });
  const handed = takeTokenFromFragment();
  if (handed) {
    startSession(handed, '');
  } else {
    session = loadSession();
    if (session) {
      api.setToken(session.token);
      refreshUnread();
    }
  }
  listenForHostToken((token, name) => {
    if (startSession(token, name)) navigate(HOME[session.role]);
  });
  document.getElementById('skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener('hashchange', () => {
    const token = takeTokenFromFragment();
    if (token) {
      if (startSession(token, '')) navigate(HOME[session.role], { replaceEntry: true });
      else render();
      return;
    }
    render();
  });
  render();
}

start();
