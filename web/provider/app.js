// The provider app (`/apps/provider/`), where the EHR launch lands: completes the SMART flow
// with fhirclient, applies the EHR's style (`smart_style_url`), shows the patient banner when
// the EHR asks for one (`need_patient_banner`), and switches between the provider's inbox,
// the launch patient's threads and a thread. Messages arriving over the websocket
// subscription refresh whatever is on screen.
import { announce, h, render } from '/web/dom.js';
import { ProviderApi } from './api.js';
import { showPatientBanner } from './patient-banner.js';
import { applySmartStyle } from './smart-style.js';
import { inboxView } from './inbox-view.js';
import { patientView } from './patient-view.js';
import { threadView } from './thread-view.js';
import { watchMessages } from './live-updates.js';

async function start() {
  const client = await globalThis.FHIR.oauth2.ready();
  const tokenResponse = client.state.tokenResponse ?? {};
  const me = client.getFhirUser();
  if (!me?.startsWith('Practitioner/')) {
    throw new Error('this app is for practitioners launched from the EHR');
  }
  const api = new ProviderApi(client, me);
  const patient = client.patient.id ? `Patient/${client.patient.id}` : undefined;

  await applySmartStyle(tokenResponse.smart_style_url);
  const [identities, patientResource, myName] = await Promise.all([
    api.identities(),
    patient ? api.get(patient).catch(() => undefined) : undefined,
    api.names([me]).then((names) => names.get(me)),
  ]);
  render('#who', myName);
  if (patientResource && tokenResponse.need_patient_banner) {
    showPatientBanner(document.getElementById('banner'), patientResource);
  }

  const app = { api, identities, patient, patientResource, current: undefined };
  const views = {
    inbox: () => inboxView(app, { openThread: (id) => show('thread', id, 'inbox') }),
    patient: () => patientView(app, { openThread: (id) => show('thread', id, 'patient') }),
    thread: (id, back) => threadView(app, id, { back: () => show(back), onClosed: () => show(back) }),
  };

  function show(name, ...args) {
    const first = !app.current;
    app.current = views[name](...args);
    renderTabs(app, name === 'thread' ? args[1] : name, show);
    render('#view', app.current.element);
    app.current.refresh().catch(reportError);
    if (!first) {
      // Moving between views moves focus to the new view's heading; opening the app does not grab it from the EHR.
      app.current.focus?.();
    }
  }

  show('inbox');
  await watchMessages(
    api,
    identities.references,
    () => app.current?.refresh().catch(reportError),
    (state) => render('#live', state === 'live' ? 'Live' : 'Reconnecting…')
  ).catch(() => {
    // Without the subscription the app still works; it just cannot hear new messages.
    render('#live', 'Not live');
  });
}

function renderTabs(app, active, show) {
  const tab = (name, label) =>
    h('button', { type: 'button', 'aria-current': active === name ? 'page' : undefined, onclick: () => show(name) }, label);
  render(
    '#tabs',
    tab('inbox', 'My inbox'),
    app.patient ? tab('patient', app.patientResource ? `This patient’s threads` : 'Patient threads') : null
  );
}

function reportError(err) {
  announce(`Something went wrong: ${err.message}`, 'error');
}

start().catch((err) => {
  render('#view', h('div', { class: 'notice', role: 'alert' }, `The app could not start: ${err.message}. Open it again from the EHR.`));
});
