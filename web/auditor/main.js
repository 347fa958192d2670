// The auditor dashboard's entry point: a standalone SMART launch with fhirclient (a welcome
// page with "Sign in" until the authorization server has answered), then two views, the
// engagement reports and the audit trail. Auditors never see message text: the server
// refuses them Communication, and nothing here asks for it.
import { announce, h, loadConfig, displayName, render } from '/web/dom.js';
import { reportsView } from './reports.js';
import { auditTrailView } from './audit-trail.js';

const FHIR = globalThis.FHIR;

async function start() {
  const config = await loadConfig();
  const client = await authorizedClient();
  if (!client) {
    welcome(config);
    return;
  }
  await dashboard(client);
}

/**
 * The client when this page is the redirect back from the authorization server, or a
 * session is already open in this tab; undefined otherwise (fhirclient keeps its state in
 * sessionStorage under SMART_KEY).
 */
async function authorizedClient() {
  const params = new URLSearchParams(location.search);
  const returning = params.has('code') || params.has('error') || sessionStorage.getItem('SMART_KEY');
  if (!returning) {
    return undefined;
  }
  try {
    return await FHIR.oauth2.ready();
  } catch (err) {
    sessionStorage.clear();
    announce(`Sign-in did not complete: ${err.message}`, 'error');
    return undefined;
  }
}

function welcome(config) {
  const app = config.apps.auditor;
  const signIn = () =>
    FHIR.oauth2.authorize({ clientId: app.clientId, scope: app.scope, redirectUri: app.redirectUri, iss: config.fhirBase });
  render(
    '#app',
    h(
      'section',
      { class: 'card welcome', 'aria-labelledby': 'welcome-title' },
      h('h2', { id: 'welcome-title' }, 'Engagement reports and the audit trail'),
      h('p', {}, 'Run the Meaningful Use patient-engagement measures for an eligible professional or a hospital, download signed reports, check signatures, and search the audit trail.'),
      h('p', { class: 'muted' }, 'For auditors and administrators. You sign in with your CareThread account.'),
      h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'button', onclick: signIn }, 'Sign in'))
    )
  );
}

async function dashboard(client) {
  const who = await client.user.read().catch(() => undefined);
  const signOut = () => {
    sessionStorage.clear();
    location.assign(location.pathname);
  };
  render('#session', h('span', { class: 'who' }, who ? displayName(who) : ''), ' ', h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));

  const views = [
    { id: 'reports', label: 'Reports', build: reportsView },
    { id: 'audit', label: 'Audit trail', build: auditTrailView },
  ];
  const panel = h('div', { id: 'view' });
  const tabs = views.map((view) => h('button', { type: 'button', 'data-view': view.id, onclick: () => show(view) }, view.label));
  const built = new Map();
  function show(view) {
    for (const tab of tabs) {
      tab.toggleAttribute('aria-current', false);
      if (tab.dataset.view === view.id) {
        tab.setAttribute('aria-current', 'page');
      }
    }
    if (!built.has(view.id)) {
      built.set(view.id, view.build(client));
    }
    render(panel, built.get(view.id));
  }
  render('#app', h('nav', { class: 'tabs', 'aria-label': 'Views' }, tabs), panel);
  show(views[0]);
}

start().catch((err) => announce(`The dashboard could not start: ${err.message}`, 'error'));
