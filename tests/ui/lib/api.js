// The API as the tests use it: sign in through `POST /dev/sign-in`, then plain fetch.

export class Api {
  constructor(base, token) {
    this.base = base;
    this.token = token;
  }

  static async signIn(base, role, sub) {
    const r = await fetch(`${base}/dev/sign-in`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(sub === undefined ? { role } : { role, sub }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(`sign-in as ${role} ${sub ?? ''} failed: ${r.status} ${JSON.stringify(body)}`);
    return new Api(base, body.token);
  }

  async call(method, path, body, headers = {}) {
    const r = await fetch(`${this.base}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
    return { status: r.status, body: json, text, headers: r.headers };
  }

  async ok(method, path, body, headers) {
    const r = await this.call(method, path, body, headers);
    if (r.status >= 300) throw new Error(`${method} ${path} answered ${r.status}: ${r.text}`);
    return r.body;
  }

  availability(doctorId, days = 14, from) {
    const q = new URLSearchParams({ days: String(days) });
    if (from) q.set('from', from);
    return this.ok('GET', `/patient/doctors/${doctorId}/availability?${q}`);
  }

  /** The first free slot of a doctor (optionally after `skip` free ones), from the API,
   * starting at least `marginMs` from now (the real clock: clear of slots about to start). */
  async freeSlot(doctorId, skip = 0, marginMs = 3 * 60 * 1000) {
    const a = await this.availability(doctorId, 21);
    const soon = Date.now() + marginMs;
    const free = a.days.flatMap((d) => d.slots.map((s) => ({ ...s, date: d.date })))
      .filter((s) => s.status === 'available' && Date.parse(s.start) > soon);
    if (free.length <= skip) throw new Error(`doctor ${doctorId} has no free slot`);
    return free[skip];
  }

  async slotStatus(doctorId, start) {
    const a = await this.availability(doctorId, 21);
    for (const d of a.days) {
      for (const s of d.slots) if (Date.parse(s.start) === Date.parse(start)) return s.status;
    }
    return null;
  }

  book(doctorId, start, extra = {}) {
    return this.call('POST', '/patient/doctors/book', {
      doctor_id: doctorId,
      scheduled_at: start,
      consult_mode: 'video',
      ...extra,
    });
  }

  consultations() {
    return this.ok('GET', '/patient/consultations').then((b) => b.consultations);
  }
}
