/**
 * Business days: Monday to Friday, less holidays. US federal holidays are built in (with
 * the observed-day rule: a Saturday holiday is observed on Friday, a Sunday one on Monday);
 * a practice adds its own days. "Within N business days" counts from the day after.
 * Dates are calendar days (YYYY-MM-DD) in the practice's time zone, given by the caller.
 */

export class HolidayCalendar {
  private readonly extra: Set<string>;
  private readonly cache = new Map<number, Set<string>>();

  constructor(practiceDays: readonly string[] = [], readonly federal = true) {
    this.extra = new Set(practiceDays);
  }

  isHoliday(day: string): boolean {
    if (this.extra.has(day)) {
      return true;
    }
    return this.federal && this.federalHolidays(Number(day.slice(0, 4))).has(day);
  }

  isBusinessDay(day: string): boolean {
    const weekday = new Date(`${day}T00:00:00Z`).getUTCDay();
    return weekday !== 0 && weekday !== 6 && !this.isHoliday(day);
  }

  /** The day that is `n` business days after `day` (counting starts the day after). */
  addBusinessDays(day: string, n: number): string {
    let current = day;
    let remaining = n;
    while (remaining > 0) {
      current = nextDay(current);
      if (this.isBusinessDay(current)) {
        remaining--;
      }
    }
    return current;
  }

  /** The federal holidays (observed dates) of a year, plus next New Year's observed on Dec 31. */
  federalHolidays(year: number): Set<string> {
    let days = this.cache.get(year);
    if (!days) {
      days = new Set([...federalHolidayDates(year), ...federalHolidayDates(year + 1).filter((d) => d.startsWith(`${year}-`))]);
      this.cache.set(year, days);
    }
    return days;
  }

  /** The practice-specific days (for printing in reports). */
  practiceDays(): string[] {
    return [...this.extra].sort();
  }
}

function federalHolidayDates(year: number): string[] {
  const fixed = (month: number, day: number) => observed(Date.UTC(year, month - 1, day));
  const nth = (month: number, weekday: number, n: number) => {
    const first = new Date(Date.UTC(year, month - 1, 1)).getUTCDay();
    return iso(Date.UTC(year, month - 1, 1 + ((weekday - first + 7) % 7) + (n - 1) * 7));
  };
  const last = (month: number, weekday: number) => {
    const end = new Date(Date.UTC(year, month, 0));
    return iso(Date.UTC(year, month - 1, end.getUTCDate() - ((end.getUTCDay() - weekday + 7) % 7)));
  };
  const days = [
    fixed(1, 1), // New Year's Day
    nth(1, 1, 3), // Martin Luther King Jr. Day
    nth(2, 1, 3), // Washington's Birthday
    last(5, 1), // Memorial Day
    fixed(7, 4), // Independence Day
    nth(9, 1, 1), // Labor Day
    nth(10, 1, 2), // Columbus Day
    fixed(11, 11), // Veterans Day
    nth(11, 4, 4), // Thanksgiving Day
    fixed(12, 25), // Christmas Day
  ];
  if (year >= 2021) {
    days.push(fixed(6, 19)); // Juneteenth National Independence Day
  }
  return days;
}

function observed(ms: number): string {
  const weekday = new Date(ms).getUTCDay();
  return iso(weekday === 6 ? ms - 86_400_000 : weekday === 0 ? ms + 86_400_000 : ms);
}

export function nextDay(day: string): string {
  return iso(Date.parse(`${day}T00:00:00Z`) + 86_400_000);
}

function iso(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
