// My activity: who viewed, downloaded or sent the patient's record, and when (the history
// the certification criterion says the patient can see), newest first.
import { formatDateTime, h, render } from '/web/dom.js';

const DELIVERY = { pending: 'sending', delivered: 'delivered', failed: 'could not be delivered' };
const ACTIONS = { view: 'Viewed', download: 'Downloaded', transmit: 'Sent to a provider', 'access-granted': 'Online access given' };

export async function showActivity({ api }, target) {
  const events = await api.activity();
  render(
    target,
    h('h2', {}, 'My activity'),
    h('p', { class: 'muted' }, 'Every time your health record was viewed, downloaded or sent from the portal, and by whom.'),
    events.length
      ? h(
          'table',
          { class: 'activity' },
          h('caption', { class: 'visually-hidden' }, 'Activity on your health record'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, 'Who'))),
          h(
            'tbody',
            {},
            events.map((e) =>
              h(
                'tr',
                { 'data-action': e.action ?? '' },
                h('td', {}, h('time', { datetime: e.when ?? '' }, formatDateTime(e.when))),
                h('td', {}, ACTIONS[e.action] ?? e.description ?? e.action, e.delivery ? h('span', { class: 'muted' }, ` (${DELIVERY[e.delivery] ?? e.delivery})`) : null),
                h('td', {}, e.who?.reference === api.me ? `You (${e.who?.display ?? ''})` : (e.who?.display ?? 'Unknown'))
              )
            )
          )
        )
      : h('p', { class: 'card' }, 'No activity yet.')
  );
}
