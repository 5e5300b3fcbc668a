/**
 * The contact centre's opening hours (`Mon-Fri 08:00-18:00; Sat 09:00-13:00` in its time zone,
 * or `always`), and the schedules that mark them: silence is only an outage while the centre is
 * open, so the no-events alarm looks at those hours alone.
 */

export const ALWAYS_OPEN = 'always';

/** Granularity of the hours and of the alarm's periods. */
export const OPENING_STEP_MINUTES = 5;

const DAYS = ['MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN'] as const;
export type Day = (typeof DAYS)[number];

export interface OpeningWindow {
  /** The days it applies to, Monday first. */
  readonly days: Day[];
  /** Minutes after midnight, local time: open from `start` up to, not including, `end`. */
  readonly start: number;
  readonly end: number;
}

export class OpeningHoursError extends Error {}

/** The windows of `text`, or `undefined` for a centre that never closes. */
export function parseOpeningHours(text: string): OpeningWindow[] | undefined {
  if (text.trim().toLowerCase() === ALWAYS_OPEN) return undefined;
  const windows = text
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map(parseWindow);
  if (windows.length === 0) throw new OpeningHoursError('names no opening hours');
  return windows;
}

function parseWindow(text: string): OpeningWindow {
  const match = /^([A-Za-z,\s-]+?)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$/.exec(text);
  if (!match) {
    throw new OpeningHoursError(`${JSON.stringify(text)} is not "<days> HH:MM-HH:MM", e.g. "Mon-Fri 08:00-18:00"`);
  }
  const days = parseDays(match[1]);
  const start = minutes(match[2], match[3], text);
  const end = minutes(match[4], match[5], text);
  if (end <= start) {
    throw new OpeningHoursError(
      `${JSON.stringify(text)} closes before it opens: split a window past midnight in two, e.g. "Fri 22:00-24:00; Sat 00:00-02:00"`,
    );
  }
  return { days, start, end };
}

function parseDays(text: string): Day[] {
  const days = new Set<Day>();
  for (const part of text.split(',').map((p) => p.trim())) {
    const [from, to] = part.split('-').map((d) => d.trim());
    const first = day(from);
    const last = to === undefined ? first : day(to);
    if (DAYS.indexOf(last) < DAYS.indexOf(first)) {
      throw new OpeningHoursError(`${JSON.stringify(part)} runs backwards: write "Sat-Sun" or "Mon,Sun"`);
    }
    DAYS.slice(DAYS.indexOf(first), DAYS.indexOf(last) + 1).forEach((d) => days.add(d));
  }
  return DAYS.filter((d) => days.has(d));
}

function day(text: string | undefined): Day {
  const found = DAYS.find((d) => d === text?.slice(0, 3).toUpperCase() && text.length >= 3);
  if (!found) throw new OpeningHoursError(`${JSON.stringify(text)} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)`);
  return found;
}

function minutes(hours: string, mins: string, text: string): number {
  const value = Number(hours) * 60 + Number(mins);
  if (Number(mins) > 59 || value > 24 * 60 || value % OPENING_STEP_MINUTES !== 0) {
    throw new OpeningHoursError(`${JSON.stringify(text)}: times run from 00:00 to 24:00 in steps of ${OPENING_STEP_MINUTES} minutes`);
  }
  return value;
}

/**
 * EventBridge Scheduler cron expressions (in the centre's time zone) that fire every five
 * minutes while the centre is open, from its opening to five minutes before it closes.
 */
export function openingHeartbeatCrons(windows: readonly OpeningWindow[]): string[] {
  const crons: string[] = [];
  for (const window of windows) {
    const days = window.days.join(',');
    const cron = (minute: string, hour: string) => `cron(${minute} ${hour} ? * ${days} *)`;
    const steps = (from: number, to: number) => {
      const list: number[] = [];
      for (let m = from; m < to; m += OPENING_STEP_MINUTES) list.push(m);
      return list.join(',');
    };
    const [startHour, startMinute] = [Math.floor(window.start / 60), window.start % 60];
    const [endHour, endMinute] = [Math.floor(window.end / 60), window.end % 60];
    if (startHour === endHour) {
      crons.push(cron(steps(startMinute, endMinute), `${startHour}`));
      continue;
    }
    if (startMinute > 0) crons.push(cron(steps(startMinute, 60), `${startHour}`));
    const [fullFrom, fullTo] = [startMinute > 0 ? startHour + 1 : startHour, endHour - 1];
    if (fullFrom <= fullTo) crons.push(cron(`0/${OPENING_STEP_MINUTES}`, fullFrom === fullTo ? `${fullFrom}` : `${fullFrom}-${fullTo}`));
    if (endMinute > 0) crons.push(cron(steps(0, endMinute), `${endHour}`));
  }
  return crons;
}

/** Whether `zone` is an IANA time zone this runtime (and so EventBridge Scheduler) knows. */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return zone.includes('/') || zone === 'UTC';
  } catch {
    return false;
  }
}
