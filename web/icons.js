// Inline SVG icons (decorative: the text next to them names the thing).

const NS = 'http://www.w3.org/2000/svg';

const PATHS = {
  voice: [
    'M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25 11.4 11.4 0 0 0 3.6.57 1 1 0 0 1 1 1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.57 3.57a1 1 0 0 1-.25 1z',
  ],
  video: [
    'M4 6h10a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2z',
    'M16 10.5l5-3v9l-5-3z',
  ],
  chat: [
    'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z',
  ],
  calendar: [
    'M5 5h14a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2z',
    'M3 10h18M8 3v4M16 3v4',
  ],
  refresh: [
    'M20 11a8 8 0 1 0-2.3 5.7',
    'M20 4v7h-7',
  ],
  close: ['M6 6l12 12M18 6L6 18'],
  plus: ['M12 5v14M5 12h14'],
  bell: [
    'M6 16V11a6 6 0 1 1 12 0v5l2 2H4z',
    'M10 20a2 2 0 0 0 4 0',
  ],
};

const FILLED = new Set(['voice', 'video', 'chat']);

/** An `<svg>` icon, hidden from assistive technology. */
export function icon(name) {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '20');
  svg.setAttribute('height', '20');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon icon-${name}`);
  for (const d of PATHS[name] ?? []) {
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', d);
    if (FILLED.has(name)) {
      path.setAttribute('fill', 'currentColor');
    } else {
      path.setAttribute('fill', 'none');
      path.setAttribute('stroke', 'currentColor');
      path.setAttribute('stroke-width', '2');
      path.setAttribute('stroke-linecap', 'round');
      path.setAttribute('stroke-linejoin', 'round');
    }
    svg.append(path);
  }
  return svg;
}

export const MODES = [
  { value: 'voice', label: 'Voice', hint: 'An in-app audio call' },
  { value: 'video', label: 'Video', hint: 'An in-app video call' },
  { value: 'chat', label: 'Chat', hint: 'In-app text messages' },
];

/** "Video" for `video`; legacy `whatsapp` bookings keep their name. */
export function modeLabel(mode) {
  return MODES.find((m) => m.value === mode)?.label ?? (mode === 'whatsapp' ? 'WhatsApp' : mode);
}
