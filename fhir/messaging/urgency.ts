/**
 * The urgency screen: phrases that mean a patient may need emergency care right now. A
 * patient's message containing one is flagged urgent and answered at once with emergency
 * guidance. Matching ignores case, accents, punctuation and curly apostrophes.
 */
import { normalizeString } from '../store/index-values.js';

export const DEFAULT_URGENT_PHRASES = [
  'chest pain',
  "can't breathe",
  'cannot breathe',
  'trouble breathing',
  'difficulty breathing',
  'suicidal',
  'kill myself',
  'want to die',
  'overdose',
  'stroke',
  'face drooping',
  'severe bleeding',
  'unconscious',
  'seizure',
];

export const URGENT_AUTO_REPLY =
  'Your message mentions something that may need emergency care. If this is an emergency, call 911 or go to the nearest emergency department now. ' +
  'If you are thinking about harming yourself, call or text 988 (Suicide & Crisis Lifeline). Secure messages are not monitored around the clock.';

function fold(text: string): string {
  return normalizeString(text)
    .replace(/[’‘`´]/g, "'")
    .replace(/[^a-z0-9']+/g, ' ')
    .trim();
}

export class UrgencyScreen {
  private readonly phrases: string[];

  constructor(phrases: readonly string[] = DEFAULT_URGENT_PHRASES) {
    this.phrases = phrases.map(fold).filter(Boolean);
  }

  /** Whether any text contains an urgent phrase (as whole words). */
  isUrgent(texts: (string | undefined)[]): boolean {
    const haystack = ` ${texts.filter(Boolean).map((t) => fold(t!)).join(' ')} `;
    return this.phrases.some((p) => haystack.includes(` ${p} `));
  }
}
