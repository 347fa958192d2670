// The patient portal: a standalone SMART launch. Before sign-in it shows a welcome page
// whose button starts the authorization (the server's sign-in and consent pages, where a
// representative picks the patient they act for); on return `FHIR.oauth2.ready()` gives the
// client, and the token's patient is the one the portal acts for. Views: messages, the
// health record (view, download, transmit), the activity history, notification settings.
import { displayName, h, loadConfig, render } from '/web/dom.js';
import { PortalApi, errorText } from './api.js';
import { showActivity } from './activity-view.js';
import { flash } from './flash.js';
import { showCompose, showInbox, showThread } from './messages-view.js';
import { showPreferences } from './preferences-view.js';
import { showRecord } from './record-view.js';

const VIEWS = [
  ['messages', 'Messages'],
  ['record', 'My health record'],
  ['activity', 'My activity'],
  ['preferences', 'Notifications'],
];

async function start() {
  const config = await loadConfig();
  const params = new URLSearchParams(location.search);
  const resuming = params.has('code') || params.has('error') || sessionStorage.getItem('SMART_KEY');
  if (!resuming) {
    welcome(config);
    return;
  }
  let client;
  try {
    client = await FHIR.oauth2.ready();
  } catch (err) {
    sessionStorage.clear();
    welcome(config, `Sign-in did not complete: ${errorText(err)}`);
    return;
  }
  if (!client.patient.id) {
    welcome(config, 'No patient was chosen at sign-in. Please sign in again.');
    return;
  }
  const api = new PortalApi(client);
  const patient = await api.get(api.patient);
  const me = api.me === api.patient ? patient : await api.get(api.me).catch(() => undefined);
  showWho(api, patient, me);
  const app = { api, patient, go };
  window.addEventListener('hashchange', () => route(app, true));
  route(app, false);
}

function welcome(config, problem) {
  const signIn = () =>
    FHIR.oauth2.authorize({ clientId: config.apps.portal.clientId, scope: config.apps.portal.scope, redirectUri: config.apps.portal.redirectUri, iss: config.fhirBase });
  render(
    '#view',
    h(
      'section',
      { class: 'card welcome', 'aria-labelledby': 'welcome-title' },
      h('h2', { id: 'welcome-title' }, 'Welcome to your patient portal'),
      h('p', {}, 'Send secure messages to your care team, see and download your health record, send it to another doctor, and see who has looked at it.'),
      problem ? h('p', { class: 'notice', role: 'alert' }, problem) : null,
      h('button', { class: 'primary', type: 'button', id: 'sign-in', onclick: signIn }, 'Sign in'),
      h('p', { class: 'muted' }, 'Parents and caregivers who act for a patient sign in with their own account and choose the patient.')
    )
  );
}

function showWho(api, patient, me) {
  const acting = api.me !== api.patient;
  render(
    '#who',
    h('span', {}, acting ? `${displayName(me)} for ${displayName(patient)}` : displayName(patient)),
    ' ',
    h(
      'button',
      {
        class: 'link',
        type: 'button',
        onclick: () => {
          sessionStorage.clear();
          location.href = location.pathname;
        },
      },
      'Sign out'
    )
  );
}

function go(hash) {
  if (location.hash === hash) {
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
}

async function route(app, moved) {
  const [name, arg] = location.hash.replace(/^#/, '').split('/');
  const current = name === 'thread' || name === 'compose' ? 'messages' : VIEWS.some(([v]) => v === name) ? name : 'messages';
  const tabs = h(
    'nav',
    { class: 'tabs', 'aria-label': 'Portal sections' },
    VIEWS.map(([view, label]) => h('a', { href: `#${view}`, class: 'tab', ...(view === current ? { 'aria-current': 'page' } : {}) }, label))
  );
  const content = h('div', { id: 'content' }, h('p', { role: 'status' }, 'Loading…'));
  render('#view', tabs, content);
  try {
    if (name === 'thread' && arg) {
      await showThread(app, content, arg);
    } else if (name === 'compose') {
      await showCompose(app, content);
    } else if (current === 'record') {
      await showRecord(app, content);
    } else if (current === 'activity') {
      await showActivity(app, content);
    } else if (current === 'preferences') {
      await showPreferences(app, content);
    } else {
      await showInbox(app, content);
    }
    const heading = content.querySelector('h2');
    if (heading) {
      // After a move, focus goes to the new view's heading (screen readers announce it).
      heading.setAttribute('tabindex', '-1');
      if (moved) {
        heading.focus({ preventScroll: true });
      }
    }
  } catch (err) {
    render(content, h('p', { class: 'notice', role: 'alert' }, `Something went wrong: ${errorText(err)}`));
    flash(errorText(err), 'error');
  }
}

start().catch((err) => {
  render('#view', h('p', { class: 'notice', role: 'alert' }, `The portal could not start: ${errorText(err)}`));
});
