// The one module that knows the HTTP API: its endpoints, the bearer header and the error
// shape `{success: false, message, error, errors?}` (+ `Retry-After` on 429 / 503).
// Screens call these functions and catch ApiError; nothing else calls fetch.

/** A failed API call: the HTTP status (0 = no answer), the API's error code, its human
 * message, field errors (`{field: [reason]}`), Retry-After in seconds (or null), and for a
 * multi-patient booking the index of the refused item (or null). */
export class ApiError extends Error {
  constructor({
    status, code, message, errors = {}, retryAfter = null, item = null, nextAvailable = [],
  }) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.errors = errors;
    this.retryAfter = retryAfter;
    this.item = item;
    /** With `time_slot_conflict`: the doctor's next free starts after the time asked. */
    this.nextAvailable = nextAvailable;
  }

  /** 429 / 503 / no answer: the same request may be sent again. */
  get retryable() {
    return this.status === 429 || this.status === 503 || this.status === 0;
  }
}

/** The seed's 409 message, word for word (the server sends it too). */
export const CONFLICT_MESSAGE =
  'This time slot was just booked by another patient. Please select a different time.';

/** Server-side limits of the medical fields, in characters. */
export const MEDICAL_LIMITS = {
  reason: 500,
  symptoms: 2000,
  medical_history: 4000,
  allergies: 1000,
  current_medications: 1000,
};

const REQUEST_TIMEOUT_MS = 15000;

let bearer = null;
let onUnauthorized = () => {};

/** The token sent as `Authorization: Bearer`; null signs out. */
export function setToken(token) {
  bearer = token;
}

/** Called once per 401 answer (the app returns to sign-in). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

function retryAfterOf(response) {
  const value = response.headers.get('Retry-After');
  if (value === null) return null;
  const seconds = Number.parseInt(value, 10);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

function withTimeout(signal) {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

/** Sends one request; answers the Response of a 2xx, throws ApiError otherwise. */
async function send(method, path, { body, headers = {}, signal, timeout = true, keepalive = false } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  // Outlives the page (a hold released as the tab closes).
  if (keepalive) init.keepalive = true;
  if (bearer) init.headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  init.signal = timeout ? withTimeout(signal) : signal;
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (signal?.aborted) throw e;
    const timedOut = e?.name === 'TimeoutError';
    throw new ApiError({
      status: 0,
      code: timedOut ? 'timeout' : 'network',
      message: timedOut
        ? 'The server did not answer in time.'
        : 'The server could not be reached.',
    });
  }
  if (response.ok) return response;
  let payload = {};
  try {
    payload = await response.json();
  } catch {
    // Not the API's JSON (a proxy's page, say): keep the status only.
  }
  const error = new ApiError({
    status: response.status,
    code: payload.error ?? `http_${response.status}`,
    message: payload.message ?? `The server answered ${response.status}.`,
    errors: payload.errors ?? {},
    retryAfter: retryAfterOf(response),
    item: Number.isInteger(payload.item) ? payload.item : null,
    nextAvailable: Array.isArray(payload.next_available) ? payload.next_available : [],
  });
  if (response.status === 401) onUnauthorized(error);
  throw error;
}

async function json(method, path, options) {
  const response = await send(method, path, options);
  return response.json();
}

const get = (path, options) => json('GET', path, options);
const post = (path, body, options = {}) => json('POST', path, { ...options, body });

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') q.set(key, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// Development profile (404 in production).
export const dev = {
  users: () => get('/dev/users'),
  signIn: (role, sub) => post('/dev/sign-in', sub === undefined ? { role } : { role, sub }),
};

export const patient = {
  doctors: () => get('/patient/doctors'),
  availability: (doctorId, from, days, signal) =>
    get(`/patient/doctors/${doctorId}/availability${query({ from, days })}`, { signal }),
  /** 200 `{available, held_until}`; 409 when taken or held by someone else. */
  checkSlot: (doctorId, scheduledAt, hold = true) =>
    post('/patient/doctors/check-slot', { doctor_id: doctorId, scheduled_at: scheduledAt, hold }),
  /** Gives up this patient's hold on the doctor (if any), so others may take the time. */
  releaseHold: (doctorId, { keepalive = false } = {}) =>
    json('DELETE', `/patient/doctors/${doctorId}/hold`, { keepalive }),
  /** 201 `{consultation}`. The caller owns the Idempotency-Key (one per attempt). */
  book: (booking, idempotencyKey) =>
    post('/patient/doctors/book', booking, { headers: { 'Idempotency-Key': idempotencyKey } }),
  /** 201 `{booking: {id, consultations}}`: every item or none; a refusal names its
   * `item`. The caller owns the Idempotency-Key (one per attempt). */
  bookMany: (items, idempotencyKey) =>
    post('/patient/bookings', { items }, { headers: { 'Idempotency-Key': idempotencyKey } }),
  booking: (id) => get(`/patient/bookings/${id}`),
  /** 200 `{consultation}` at its new time; 409 when the new time is taken. */
  reschedule: (id, scheduledAt, idempotencyKey) =>
    post(`/patient/consultations/${id}/reschedule`, { scheduled_at: scheduledAt },
      { headers: { 'Idempotency-Key': idempotencyKey } }),
  consultations: () => get('/patient/consultations'),
  consultation: (id) => get(`/patient/consultations/${id}`),
  cancel: (id) => post(`/patient/consultations/${id}/cancel`, {}),
  session: (id) => get(`/patient/consultations/${id}/session`),
  /** The `.ics` file as a Blob (the bearer header rules out a plain link). */
  calendar: async (id) => {
    const response = await send('GET', `/patient/consultations/${id}/calendar.ics`, {
      headers: { Accept: 'text/calendar' },
    });
    return response.blob();
  },
  /** The availability stream's Response (SSE); no timeout, closed through `signal`. */
  availabilityStream: (doctorId, lastEventId, signal) =>
    send('GET', `/patient/doctors/${doctorId}/availability/stream`, {
      headers: {
        Accept: 'text/event-stream',
        ...(lastEventId ? { 'Last-Event-ID': lastEventId } : {}),
      },
      signal,
      timeout: false,
    }),
};

export const inbox = {
  list: (params = {}) => get(`/notifications${query(params)}`),
  markRead: (ids) => post('/notifications/read', { ids }),
};

export const doctor = {
  profile: () => get('/doctor/profile'),
  availability: () => get('/doctor/availability'),
  saveSchedule: (schedule) => json('PUT', '/doctor/availability', { body: schedule }),
  setAvailable: (isAvailable) =>
    json('PATCH', '/doctor/status', { body: { is_available: isAvailable } }),
  consultations: (from, to) => get(`/doctor/consultations${query({ from, to })}`),
  session: (id) => get(`/doctor/consultations/${id}/session`),
};

export const admin = {
  doctors: () => get('/admin/doctors'),
  createDoctor: (doctor) => post('/admin/doctors', doctor),
  approve: (id) => post(`/admin/doctors/${id}/approve`, {}),
};
