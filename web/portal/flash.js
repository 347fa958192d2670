// A short-lived status line: announced to screen readers, then cleared, so a confirmation
// does not linger over the next view.
import { announce } from '/web/dom.js';

let timer;

export function flash(message, kind = 'info') {
  announce(message, kind);
  clearTimeout(timer);
  timer = setTimeout(() => {
    const region = document.getElementById('status');
    if (region) {
      region.textContent = '';
    }
  }, kind === 'error' ? 8000 : 4000);
}
