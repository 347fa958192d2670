// The Audit trail view: the audit report of the certification criterion. A search of
// GET AuditEvent (period date=ge…&date=lt…, user agent= or agent-name=, patient=, action,
// event subtype, outcome) sorted by date, user, patient or action, paged with the Bundle's
// links; above it, whether the hash chain verifies (AuditEvent/$verify-chain).
// AuditEvents never hold message text; only references, codes and times are shown.
import { formatDateTime, h, render } from '/web/dom.js';
import { errorText, patientNames } from './fhir-api.js';

const PAGE_SIZE = 20;

const ACTIONS = { C: 'Create', R: 'Read', U: 'Update', D: 'Delete', E: 'Execute' };
const OUTCOMES = { 0: 'Success', 4: 'Minor failure', 8: 'Serious failure', 12: 'Major failure' };
const EVENTS = ['view', 'download', 'transmit', 'access-granted', 'read', 'vread', 'search-type', 'history-instance', 'create', 'update', 'patch', 'delete', 'operation', 'login', 'login-failed', 'token', 'launch', 'revoke'];
const SORTS = [
  { value: '-date', label: 'Date, newest first' },
  { value: 'date', label: 'Date, oldest first' },
  { value: 'agent,-date', label: 'User' },
  { value: 'patient,-date', label: 'Patient' },
  { value: 'action,-date', label: 'Action' },
];

export function auditTrailView(client) {
  const chain = h('section', { class: 'card chain', 'aria-labelledby': 'chain-title' });
  const from = h('input', { id: 'audit-from', type: 'date' });
  const to = h('input', { id: 'audit-to', type: 'date' });
  const user = h('input', { id: 'audit-user', type: 'text', placeholder: 'Practitioner/… or a client id', autocomplete: 'off' });
  const patient = h('input', { id: 'audit-patient', type: 'text', placeholder: 'Patient/…', autocomplete: 'off' });
  const action = h('select', { id: 'audit-action' }, h('option', { value: '' }, 'Any'), Object.entries(ACTIONS).map(([code, label]) => h('option', { value: code }, `${label} (${code})`)));
  const subtype = h('select', { id: 'audit-event' }, h('option', { value: '' }, 'Any'), EVENTS.map((code) => h('option', { value: code }, code)));
  const outcome = h('select', { id: 'audit-outcome' }, h('option', { value: '' }, 'Any'), Object.entries(OUTCOMES).slice(0, 3).map(([code, label]) => h('option', { value: code }, label)));
  const sort = h('select', { id: 'audit-sort' }, SORTS.map((s) => h('option', { value: s.value }, s.label)));
  const results = h('section', { id: 'audit-results', 'aria-live': 'polite' });

  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'audit-title' },
    h('h2', { id: 'audit-title' }, 'Search the audit trail'),
    h('div', { class: 'row' }, field('From (day)', from), field('To (day, included)', to), field('Sort by', sort)),
    h('div', { class: 'row' }, field('User', user), field('Patient', patient)),
    h('div', { class: 'row' }, field('Action', action), field('Event', subtype), field('Outcome', outcome)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search'))
  );

  const query = () => {
    const params = new URLSearchParams();
    if (from.value) params.append('date', `ge${from.value}`);
    if (to.value) params.append('date', `lt${nextDay(to.value)}`);
    const who = user.value.trim();
    if (who) params.set(who.includes('/') ? 'agent' : 'agent-name', who);
    const subject = patient.value.trim();
    if (subject) params.set('patient', subject.includes('/') ? subject : `Patient/${subject}`);
    if (action.value) params.set('action', action.value);
    if (subtype.value) params.set('subtype', subtype.value);
    if (outcome.value) params.set('outcome', outcome.value);
    params.set('_sort', sort.value);
    params.set('_count', String(PAGE_SIZE));
    return params;
  };

  const show = async (url) => {
    render(results, h('p', { class: 'muted' }, 'Searching…'));
    try {
      const bundle = await client.request(url);
      render(results, await eventsTable(client, bundle, show));
    } catch (err) {
      render(results, h('p', { class: 'notice', role: 'alert' }, `The search failed: ${errorText(err)}`));
    }
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    show(`AuditEvent?${query()}`);
  });

  checkChain(client, chain);
  show(`AuditEvent?${query()}`);
  return h('div', {}, chain, form, results);
}

function field(label, control) {
  return h('div', {}, h('label', { for: control.id }, label), control);
}

/** The acting user's reference, or the client's name when no user acted. */
function userOf(agent) {
  return agent?.who?.reference ?? agent?.who?.display ?? '';
}

function nextDay(day) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + 1);
  return date.toISOString().slice(0, 10);
}

async function checkChain(client, target) {
  const again = h('button', { type: 'button', onclick: () => checkChain(client, target) }, 'Check again');
  render(target, h('h2', { id: 'chain-title' }, 'Hash chain'), h('p', { class: 'muted' }, 'Verifying the chain…'));
  try {
    const result = await client.request('AuditEvent/$verify-chain');
    const get = (name) => result.parameter?.find((p) => p.name === name);
    const valid = get('valid')?.valueBoolean === true;
    const problem = get('firstProblem')?.part ?? [];
    const part = (name) => problem.find((p) => p.name === name);
    render(
      target,
      h('h2', { id: 'chain-title' }, 'Hash chain'),
      h(
        'p',
        { id: 'chain-status', class: `chain-status ${valid ? 'is-valid' : 'is-invalid'}` },
        h('strong', {}, valid ? 'Chain intact' : 'Chain broken'),
        ` — ${get('checked')?.valueInteger ?? 0} events checked, ${get('pending')?.valueInteger ?? 0} pending sealing.`
      ),
      valid
        ? null
        : h(
            'p',
            { class: 'notice' },
            `First problem: ${part('kind')?.valueCode ?? 'unknown'}`,
            part('position') ? ` at position ${part('position').valueInteger}` : '',
            part('id') ? ` (AuditEvent/${part('id').valueString})` : '',
            part('detail') ? `: ${part('detail').valueString}` : ''
          ),
      h('div', { class: 'actions' }, again)
    );
  } catch (err) {
    render(target, h('h2', { id: 'chain-title' }, 'Hash chain'), h('p', { class: 'notice', role: 'alert' }, `Could not verify the chain: ${errorText(err)}`), again);
  }
}

async function eventsTable(client, bundle, show) {
  const events = (bundle.entry ?? []).map((e) => e.resource).filter((r) => r?.resourceType === 'AuditEvent');
  const patientsOf = (event) => (event.entity ?? []).map((e) => e.what?.reference).filter((r) => r?.startsWith('Patient/'));
  const names = await patientNames(client, events.flatMap(patientsOf)).catch(() => new Map());
  const link = (relation) => bundle.link?.find((l) => l.relation === relation)?.url;
  const previous = link('previous') ?? link('prev');
  const next = link('next');
  const total = typeof bundle.total === 'number' ? ` of ${bundle.total}` : '';
  if (!events.length) {
    return h('div', { class: 'card' }, h('p', { class: 'muted' }, 'No audit events match.'));
  }
  return h(
    'div',
    { class: 'card' },
    h('p', { class: 'muted' }, `${events.length} event(s) on this page${total}.`),
    h(
      'div',
      { class: 'table-scroll', tabindex: '0', role: 'region', 'aria-label': 'Audit events (scrolls sideways)' },
      h(
        'table',
        { id: 'audit-table' },
        h('caption', { class: 'visually-hidden' }, 'Audit events'),
        h('thead', {}, h('tr', {}, ['When', 'User', 'Patient', 'Action', 'Event', 'Outcome', 'What'].map((label) => h('th', { scope: 'col' }, label)))),
        h(
          'tbody',
          {},
          events.map((event) => {
            const agent = event.agent?.find((a) => a.requestor) ?? event.agent?.[0];
            const patients = patientsOf(event);
            const others = (event.entity ?? []).map((e) => e.what?.reference ?? e.what?.display).filter((r) => r && !patients.includes(r));
            return h(
              'tr',
              { 'data-id': event.id },
              h('td', { class: 'when' }, formatDateTime(event.recorded)),
              h('td', { class: 'user' }, userOf(agent), agent?.name && agent.name !== userOf(agent) ? h('div', { class: 'muted' }, agent.name) : null),
              h(
                'td',
                { class: 'patient' },
                patients.map((ref) => h('div', {}, names.get(ref) ?? ref, names.has(ref) ? h('span', { class: 'muted' }, ` ${ref}`) : null))
              ),
              h('td', { class: 'action' }, ACTIONS[event.action] ?? event.action ?? ''),
              h('td', { class: 'event' }, (event.subtype ?? []).map((s) => s.code).join(', ') || event.type?.display || ''),
              h('td', { class: 'outcome' }, OUTCOMES[event.outcome] ?? event.outcome ?? ''),
              h('td', { class: 'what' }, others.join(', '))
            );
          })
        )
      )
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', disabled: !previous, onclick: () => show(previous) }, 'Previous page'),
      h('button', { type: 'button', disabled: !next, id: 'audit-next', onclick: () => show(next) }, 'Next page')
    )
  );
}
