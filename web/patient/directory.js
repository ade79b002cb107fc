// The bookable doctors, fetched once per screen visit and shared (names for lists).

import * as api from '../api.js';

let cached = null;
let cachedAt = 0;
const FRESH_MS = 15000;

/** `GET /patient/doctors`, reused for a few seconds. */
export async function bookableDoctors({ fresh = false } = {}) {
  if (!fresh && cached && Date.now() - cachedAt < FRESH_MS) return cached;
  const answer = await api.patient.doctors();
  cached = answer.doctors;
  cachedAt = Date.now();
  return cached;
}

/** "Dr. Meera Iyer", or "Doctor 7" when that doctor no longer takes bookings. */
export function doctorName(doctors, id) {
  return doctors.find((d) => d.id === id)?.name ?? `Doctor ${id}`;
}
