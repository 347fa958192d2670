/**
 * The words of an appointment reminder: date, time and place, nothing else. The reason,
 * service, specialty and description of the visit never enter it; the place is the
 * Appointment's Location participant as the EHR names it, or "your clinic".
 */
import type { Appointment } from '@medplum/fhirtypes';

export const DEFAULT_PLACE = 'your clinic';

export function reminderText(start: string, place: string, timeZone: string): string {
  const when = new Date(start);
  const date = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' }).format(when);
  const time = new Intl.DateTimeFormat('en-US', { timeZone, hour: 'numeric', minute: '2-digit', timeZoneName: 'short' }).format(when);
  return `Reminder: you have an appointment on ${date} at ${time}, at ${place}.`;
}

/** The Location participant's name, on one line and of sensible length. */
export function placeOf(appointment: Appointment): string {
  const location = (appointment.participant ?? []).find((p) => p.actor?.reference?.startsWith('Location/') && p.status !== 'declined');
  const name = location?.actor?.display?.replace(/\s+/g, ' ').trim();
  return name ? name.slice(0, 200) : DEFAULT_PLACE;
}
