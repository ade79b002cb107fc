// Times and dates, always through Intl.DateTimeFormat with an explicit IANA zone: never
// computed by hand from offsets. Instants are RFC 3339 strings from the API; dates
// (`YYYY-MM-DD`) are civil dates in the doctor's timezone.

const formatters = new Map();

function formatter(key, options) {
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(undefined, options);
    formatters.set(key, f);
  }
  return f;
}

// ICU (so Chromium) still answers some zones by their old names; the IANA database and
// the server use the current ones.
const CURRENT_NAMES = {
  'Asia/Calcutta': 'Asia/Kolkata',
  'Asia/Katmandu': 'Asia/Kathmandu',
  'Asia/Saigon': 'Asia/Ho_Chi_Minh',
  'Asia/Rangoon': 'Asia/Yangon',
  'Europe/Kiev': 'Europe/Kyiv',
  'America/Godthab': 'America/Nuuk',
  'Atlantic/Faeroe': 'Atlantic/Faroe',
  'Pacific/Truk': 'Pacific/Chuuk',
  'Pacific/Ponape': 'Pacific/Pohnpei',
  'Pacific/Enderbury': 'Pacific/Kanton',
  'America/Buenos_Aires': 'America/Argentina/Buenos_Aires',
  'America/Indianapolis': 'America/Indiana/Indianapolis',
  'America/Louisville': 'America/Kentucky/Louisville',
  'Etc/UTC': 'UTC',
  'Etc/GMT': 'UTC',
};

/** The current IANA name of a zone (`Asia/Calcutta` -> `Asia/Kolkata`). */
export function currentZoneName(zone) {
  return CURRENT_NAMES[zone] ?? zone;
}

/** The browser's IANA timezone, e.g. `America/New_York`. */
export function browserZone() {
  return currentZoneName(Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC');
}

/** "09:30" (24-hour) in `zone`. */
export function timeIn(instant, zone) {
  return formatter(`t|${zone}`, { timeZone: zone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
    .format(new Date(instant));
}

/** "Wed, Dec 3" in `zone`. */
export function shortDateIn(instant, zone) {
  return formatter(`sd|${zone}`, { timeZone: zone, weekday: 'short', month: 'short', day: 'numeric' })
    .format(new Date(instant));
}

/** "Wednesday, December 3, 2026 at 09:30" in `zone`. */
export function dateTimeIn(instant, zone) {
  return formatter(`dt|${zone}`, {
    timeZone: zone,
    weekday: 'long',
    year: 'numeric',
    month: 'long',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).format(new Date(instant));
}

/** The civil date (`YYYY-MM-DD`) of an instant in `zone`. */
export function dateIn(instant, zone) {
  const parts = formatter(`iso|${zone}`, { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' })
    .formatToParts(new Date(instant));
  const part = (type) => parts.find((p) => p.type === type).value;
  return `${part('year')}-${part('month')}-${part('day')}`;
}

/** Today's civil date in `zone`. */
export function todayIn(zone) {
  return dateIn(Date.now(), zone);
}

// Civil dates: plain calendar arithmetic, done in UTC where no zone can shift them.
function civil(date) {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d));
}

/** `date` plus `days` calendar days. */
export function addDays(date, days) {
  const t = civil(date);
  t.setUTCDate(t.getUTCDate() + days);
  return t.toISOString().slice(0, 10);
}

/** 0 = Monday ... 6 = Sunday. */
export function weekdayIndex(date) {
  return (civil(date).getUTCDay() + 6) % 7;
}

export const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

/** The Monday on or before `date`. */
export function mondayOf(date) {
  return addDays(date, -weekdayIndex(date));
}

/** "Wednesday, December 3, 2026" for a civil date. */
export function longDate(date) {
  return formatter('ld', { timeZone: 'UTC', weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' })
    .format(civil(date));
}

/** `{weekday: "Wed", day: "3", month: "Dec", monthYear: "December 2026"}` for a civil date. */
export function dateParts(date) {
  const t = civil(date);
  const weekday = formatter('wd', { timeZone: 'UTC', weekday: 'short' }).format(t);
  const month = formatter('mo', { timeZone: 'UTC', month: 'short' }).format(t);
  const monthYear = formatter('my', { timeZone: 'UTC', month: 'long', year: 'numeric' }).format(t);
  return { weekday, day: String(t.getUTCDate()), month, monthYear };
}

/** "December 2026" (the month of a civil date). */
export function monthTitle(date) {
  return formatter('mt', { timeZone: 'UTC', month: 'long', year: 'numeric' }).format(civil(date));
}

/** "4:59" from milliseconds. */
export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return `${minutes}:${seconds}`;
}

/** Every IANA zone the browser knows, `extra` included (e.g. a stored alias). */
export function allZones(...extra) {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf('timeZone');
  } catch {
    zones = [];
  }
  const set = new Set([...zones.map(currentZoneName), 'UTC', ...extra.filter(Boolean)]);
  return [...set].sort((a, b) => a.localeCompare(b));
}

/** Whole calendar days from civil date `a` to `b` (negative when b is earlier). */
export function daysBetween(a, b) {
  return Math.round((civil(b) - civil(a)) / 86400000);
}
