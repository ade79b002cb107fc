// Who is signed in. The bearer token comes from the development sign-in, from the URL
// fragment `#token=<JWT>` (read once, then removed from the address bar and history), or
// from the embedding host page by postMessage. It lives in sessionStorage only: never in
// a query string, never logged. Role and id are read from the token's payload (the
// server verifies the signature; the page only needs to know which screens to show).

const STORAGE_KEY = 'consult-scheduler.session';
const MESSAGE_TYPE = 'consult-scheduler-token';

/** The JWT's payload, or null when it is not a readable JWT. */
export function decodeToken(token) {
  const part = typeof token === 'string' ? token.split('.')[1] : undefined;
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** `{token, role, sub, name, expiresAt}` from a token, or null if unusable or expired. */
export function sessionFromToken(token, name) {
  const claims = decodeToken(token);
  if (!claims || !['patient', 'doctor', 'admin'].includes(claims.role)) return null;
  const sub = Number(claims.sub);
  if (!Number.isSafeInteger(sub)) return null;
  const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  if (expiresAt !== null && expiresAt <= Date.now()) return null;
  return { token, role: claims.role, sub, name: name || claims.name || '', expiresAt };
}

export function loadSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? 'null');
    return stored ? sessionFromToken(stored.token, stored.name) : null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ token: session.token, name: session.name }));
}

export function clearSession() {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** A token handed over in the URL fragment (`#token=...`), removed from the URL at once. */
export function takeTokenFromFragment() {
  const hash = location.hash.replace(/^#/, '');
  if (!hash.startsWith('token=')) return null;
  const params = new URLSearchParams(hash);
  const token = params.get('token');
  const route = params.get('route');
  const next = route && route.startsWith('/') ? `#${route}` : '';
  history.replaceState(null, '', location.pathname + next);
  return token;
}

/** When framed, accepts `{type: 'consult-scheduler-token', token}` from the parent window,
 * from the origin that opened the page only; tells the parent the page is ready. */
export function listenForHostToken(onToken) {
  if (window.parent === window || !document.referrer) return;
  let hostOrigin;
  try {
    hostOrigin = new URL(document.referrer).origin;
  } catch {
    return;
  }
  window.addEventListener('message', (event) => {
    if (event.origin !== hostOrigin || event.source !== window.parent) return;
    const data = event.data;
    if (data && data.type === MESSAGE_TYPE && typeof data.token === 'string') {
      onToken(data.token, typeof data.name === 'string' ? data.name : '');
    }
  });
  window.parent.postMessage({ type: 'consult-scheduler-ready' }, hostOrigin);
}
