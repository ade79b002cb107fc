// The notification inbox (`#/inbox`, patients and doctors): newest first, unread marked,
// mark one or all read.

import { h, loading, message, replace } from './dom.js';
import { browserZone, dateTimeIn } from './time.js';

const EVENT_TEXT = {
  consultation_scheduled: 'Consultation booked',
  consultation_cancelled: 'Consultation cancelled',
  consultation_rescheduled: 'Consultation moved',
  session_ready: 'Session ready to join',
  session_failed: 'Session could not be prepared',
};

export function mount(root, ctx) {
  ctx.setTitle('Inbox');
  const zone = browserZone();
  const counter = h('p', { class: 'lead', role: 'status' });
  const markAll = h('button', { type: 'button', class: 'btn', onclick: () => markRead(unreadIds()) }, 'Mark all as read');
  const notice = h('div', {});
  const body = h('div', { 'aria-busy': 'true' }, loading('Loading notifications…'));
  replace(root,
    h('div', { class: 'screen-head' },
      h('h1', {}, 'Inbox'),
      h('div', { class: 'head-row' }, counter, markAll)),
    notice,
    body);

  let alive = true;
  let items = [];
  load();

  function unreadIds() {
    return items.filter((n) => !n.read).map((n) => n.id);
  }

  async function load() {
    try {
      items = (await ctx.api.inbox.list({ limit: 100 })).notifications;
    } catch (error) {
      if (!alive) return;
      body.removeAttribute('aria-busy');
      replace(body,
        message('error', `Your notifications could not be loaded: ${error.message}`),
        h('button', { type: 'button', class: 'btn', onclick: load }, 'Try again'));
      return;
    }
    if (!alive) return;
    body.removeAttribute('aria-busy');
    render();
  }

  function render() {
    const unread = unreadIds().length;
    counter.textContent = unread === 0 ? 'No unread notifications.' : `${unread} unread`;
    markAll.disabled = unread === 0;
    if (items.length === 0) {
      replace(body, h('p', { class: 'empty' }, 'No notifications yet. Bookings, cancellations and session updates appear here.'));
      return;
    }
    replace(body, h('ul', { class: 'inbox', 'aria-label': 'Notifications' }, items.map(item)));
  }

  function item(n) {
    const c = n.consultation;
    const title = `${EVENT_TEXT[n.event] ?? n.event}: ${c.reference}`;
    return h('li', { class: `card notification ${n.read ? 'read' : 'unread'}` },
      h('div', { class: 'notification-main' },
        h('p', { class: 'notification-title' },
          n.read ? null : h('span', { class: 'badge badge-unread' }, 'Unread'),
          ' ',
          h('strong', {}, title)),
        h('p', { class: 'muted' },
          `Consultation ${dateTimeIn(c.scheduled_at, zone)} ${zone} · received ${dateTimeIn(n.created_at, zone)}`)),
      n.read ? null : h('button', {
        type: 'button',
        class: 'btn btn-quiet',
        'aria-label': `Mark as read: ${title}`,
        onclick: () => markRead([n.id]),
      }, 'Mark as read'));
  }

  async function markRead(ids) {
    if (!ids.length) return;
    try {
      await ctx.api.inbox.markRead(ids);
    } catch (error) {
      replace(notice, message('error', `Could not mark as read: ${error.message}`));
      return;
    }
    for (const n of items) if (ids.includes(n.id)) n.read = true;
    replace(notice);
    render();
    ctx.refreshUnread();
    ctx.announce(ids.length === 1 ? 'Marked as read.' : `${ids.length} marked as read.`);
    if (!root.contains(document.activeElement) || document.activeElement === document.body) {
      root.querySelector('h1')?.focus();
    }
  }

  return {
    unmount() {
      alive = false;
    },
  };
}
