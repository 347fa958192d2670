// The provider app's launch page (`/apps/provider/launch?iss=…&launch=…`): the EHR opens it,
// fhirclient reads `iss` and `launch` from the URL and sends the browser on to CareThread's
// authorize endpoint (PKCE). An EHR launch needs no sign-in: the EHR vouches for the user,
// and the authorization server redirects straight back to the app (index.html).
import { h, loadConfig, render } from '/web/dom.js';

const status = document.getElementById('launch-status');

/**
 * fhirclient keeps the launch's state (PKCE verifier, token) in sessionStorage. A browser
 * that blocks third-party storage denies it to a frame from another site than the EHR's;
 * the launch value is not spent yet, so the app can still start in a window of its own.
 */
function storageAvailable() {
  try {
    sessionStorage.setItem('carethread-probe', '1');
    sessionStorage.removeItem('carethread-probe');
    return true;
  } catch {
    return false;
  }
}

async function launch() {
  const config = await loadConfig();
  const app = config.apps.provider;
  await globalThis.FHIR.oauth2.authorize({
    clientId: app.clientId,
    scope: app.scope,
    redirectUri: app.redirectUri,
    // Inside the EHR's iframe the whole flow stays in the frame: the EHR page is not ours.
    completeInTarget: true,
  });
}

if (storageAvailable()) {
  launch().catch((err) => {
    status.textContent = `The app could not start: ${err.message}. Open it again from the EHR.`;
    status.className = 'notice';
  });
} else {
  render(
    status,
    'This browser keeps apps embedded from another site from storing their sign-in. ',
    h('button', { type: 'button', class: 'primary', id: 'open-window', onclick: () => window.open(location.href, '_blank') }, 'Open CareThread in a new window')
  );
  status.className = 'notice';
}
