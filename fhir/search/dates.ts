/**
 * FHIR date, dateTime and instant values as half-open instant ranges [low, high).
 * "2024" covers the whole year, "2024-03-05" the whole day (UTC), and a value with seconds
 * the second it names. Search prefixes (eq, lt, sa, …) compare these ranges.
 */

export interface InstantRange {
  /** ISO instant, inclusive. */
  low: string;
  /** ISO instant, exclusive. */
  high: string;
}

const DATE_PATTERN =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/** The range a FHIR date/dateTime/instant value denotes, or undefined if it is not one. */
export function dateRange(value: string): InstantRange | undefined {
  const m = DATE_PATTERN.exec(value.trim());
  if (!m) {
    return undefined;
  }
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  const year = Number(y);
  if (mo === undefined) {
    return { low: iso(Date.UTC(year, 0, 1)), high: iso(Date.UTC(year + 1, 0, 1)) };
  }
  const month = Number(mo) - 1;
  if (month < 0 || month > 11) {
    return undefined;
  }
  if (d === undefined) {
    return { low: iso(Date.UTC(year, month, 1)), high: iso(Date.UTC(year, month + 1, 1)) };
  }
  const day = Number(d);
  if (day < 1 || day > 31 || new Date(Date.UTC(year, month, day)).getUTCMonth() !== month) {
    return undefined;
  }
  if (h === undefined) {
    return { low: iso(Date.UTC(year, month, day)), high: iso(Date.UTC(year, month, day + 1)) };
  }
  if (Number(h) > 23 || Number(mi) > 59 || (s !== undefined && Number(s) > 59)) {
    return undefined;
  }
  const offsetMinutes = tz === undefined || tz === 'Z' ? 0 : parseOffset(tz);
  const base = Date.UTC(year, month, day, Number(h), Number(mi), Number(s ?? 0)) - offsetMinutes * 60_000;
  if (s === undefined) {
    return { low: iso(base), high: iso(base + 60_000) };
  }
  const millis = frac ? Math.floor(Number(frac) * 1000) : 0;
  const precision = frac ? 1 : 1000;
  return { low: iso(base + millis), high: iso(base + millis + precision) };
}

function parseOffset(tz: string): number {
  const sign = tz.startsWith('-') ? -1 : 1;
  const [hh, mm] = tz.slice(1).split(':').map(Number);
  return sign * (hh * 60 + mm);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
