// A tiny element builder, so screens read as the markup they make.

/**
 * h('button', {type: 'button', onclick: f}, 'Save') -> <button type="button">Save</button>.
 * Attributes: `class`, `text`, `on<event>` (listeners), `dataset`, booleans (set when
 * true, left out when false), anything else as an attribute. Children: nodes, strings,
 * arrays, null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key === 'value') {
      el.value = value;
    } else if (key === 'checked' || key === 'selected') {
      el[key] = Boolean(value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let counter = 0;
/** A document-unique id with a readable prefix. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A message box: kind is 'info' | 'success' | 'error' | 'warning'. Errors are alerts
 * (announced at once), successes and warnings polite status messages; info is static. */
export function message(kind, ...children) {
  const role = { error: 'alert', success: 'status', warning: 'status' }[kind] ?? null;
  return h('div', { class: `msg msg-${kind}`, role }, ...children);
}

/** "Loading ..." placeholder, marked busy. */
export function loading(text) {
  return h('p', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

/** Text for assistive technology only (e.g. the connecting words of a compact label). */
export function hidden(text) {
  return h('span', { class: 'visually-hidden' }, text);
}
