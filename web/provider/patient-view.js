// The patient-in-context view: every thread about the patient the EHR launched the app for,
// open or closed, latest first, whoever it is addressed to.
import { formatDateTime, h, render } from '/web/dom.js';
import { CATEGORIES, categoryOf, displayName } from './api.js';

export function patientView(app, { openThread }) {
  const { api, patient, patientResource } = app;
  const list = h('ul', { class: 'list', 'aria-label': 'Threads about this patient' });
  const title = patientResource ? `Threads with ${displayName(patientResource)}` : 'Threads with this patient';
  const element = h('section', { class: 'patient-threads', 'aria-labelledby': 'patient-title' }, h('h2', { id: 'patient-title', tabindex: '-1' }, title), list);

  async function refresh() {
    const threads = await api.patientThreads(patient);
    const names = await api.names(threads.flatMap((t) => (t.recipient ?? []).map((r) => r.reference)));
    render(
      list,
      threads.length
        ? threads.map((t) =>
            h(
              'li',
              { class: 'thread-row', 'data-thread': t.id },
              h(
                'div',
                { class: 'thread-line' },
                h('button', { type: 'button', class: 'link thread-open', onclick: () => openThread(t.id) }, t.topic?.text || 'Message'),
                h('span', { class: t.status === 'in-progress' ? 'badge' : 'badge closed-badge' }, t.status === 'in-progress' ? 'Open' : 'Closed')
              ),
              h(
                'div',
                { class: 'meta thread-meta' },
                h('span', {}, CATEGORIES[categoryOf(t)] ?? categoryOf(t) ?? ''),
                h('span', {}, `To ${(t.recipient ?? []).map((r) => names.get(r.reference)).join(', ')}`),
                t.sent ? h('span', {}, 'Started ', h('time', { datetime: t.sent }, formatDateTime(t.sent))) : null
              )
            )
          )
        : h('li', { class: 'muted' }, 'No threads with this patient yet.')
    );
  }

  return { element, refresh, focus: () => element.querySelector('h2').focus() };
}
