// The provider's inbox across patients: open threads addressed to them, their roles and
// pools (CareThread's `$inbox`), urgent and unread first, with due times and owners; filters
// by category and pool; claiming a thread takes its Task.
import { announce, formatDateTime, h, render } from '/web/dom.js';
import { CATEGORIES, categoryOf } from './api.js';

export function inboxView(app, { openThread }) {
  const { api, identities } = app;
  const filters = { category: '', pool: '' };
  const list = h('ul', { class: 'list inbox-list', 'aria-label': 'Threads' });
  const summary = h('p', { class: 'muted inbox-summary', 'aria-live': 'polite' });

  const select = (id, label, options, key) =>
    h(
      'div',
      {},
      h('label', { for: id }, label),
      h(
        'select',
        { id, onchange: (event) => ((filters[key] = event.target.value), refresh().catch((err) => announce(err.message, 'error'))) },
        options.map(([value, text]) => h('option', { value }, text))
      )
    );

  const element = h(
    'section',
    { class: 'inbox', 'aria-labelledby': 'inbox-title' },
    h('h2', { id: 'inbox-title', tabindex: '-1' }, 'My inbox'),
    h(
      'div',
      { class: 'row filters' },
      select('filter-category', 'Category', [['', 'All categories'], ...Object.entries(CATEGORIES)], 'category'),
      select('filter-pool', 'Pool', [['', 'Me and all my pools'], ...identities.pools.map((p) => [p.reference, p.name])], 'pool')
    ),
    summary,
    list
  );

  async function claim(row) {
    const [task] = await api.search(`Task?focus=Communication/${row.header.id}`);
    if (!task) {
      announce('This thread has no work item to claim', 'error');
      return;
    }
    await api.assign(task, api.me);
    announce('You now own this thread');
    await refresh();
  }

  function rowFor(row, names) {
    const header = row.header;
    const overdue = row.due && Date.parse(row.due) < Date.now();
    const topic = header.topic?.text || 'Message';
    return h(
      'li',
      { class: ['thread-row', row.unread ? 'unread' : '', row.urgent ? 'is-urgent' : ''].join(' ').trim(), 'data-thread': header.id },
      h(
        'div',
        { class: 'thread-line' },
        h('button', { type: 'button', class: 'link thread-open', onclick: () => openThread(header.id) }, topic),
        row.urgent ? h('span', { class: 'badge urgent' }, 'Urgent') : null,
        row.unread ? h('span', { class: 'badge unread-badge' }, `${row.unread} unread`) : null
      ),
      h(
        'div',
        { class: 'meta thread-meta' },
        h('span', { class: 'patient' }, names.get(header.subject?.reference) ?? ''),
        h('span', {}, CATEGORIES[categoryOf(header)] ?? categoryOf(header) ?? ''),
        h('span', {}, `${row.messages} message${row.messages === 1 ? '' : 's'}`),
        row.lastSent ? h('span', {}, 'Last ', h('time', { datetime: row.lastSent }, formatDateTime(row.lastSent))) : null,
        row.due ? h('span', { class: overdue ? 'due urgent' : 'due' }, overdue ? 'Overdue since ' : 'Due ', h('time', { datetime: row.due }, formatDateTime(row.due))) : null,
        h('span', { class: 'owner' }, row.owner ? `Owner: ${row.owner === api.me ? 'you' : names.get(row.owner)}` : 'Unassigned')
      ),
      row.owner === api.me
        ? null
        : h('button', { type: 'button', class: 'claim', onclick: () => claim(row).catch((err) => announce(`Could not claim: ${err.message}`, 'error')) }, 'Claim', h('span', { class: 'visually-hidden' }, `: ${topic}`))
    );
  }

  let latest = 0;
  async function refresh() {
    // Filters change and pings arrive while a refresh runs: only the newest one may draw.
    const mine = ++latest;
    const rows = await api.inbox(filters);
    const names = await api.names(rows.flatMap((r) => [r.header.subject?.reference, r.owner]));
    if (mine !== latest) {
      return;
    }
    const unread = rows.reduce((n, r) => n + r.unread, 0);
    summary.textContent = `${rows.length} open thread${rows.length === 1 ? '' : 's'}, ${unread} unread message${unread === 1 ? '' : 's'}`;
    render(list, rows.length ? rows.map((r) => rowFor(r, names)) : h('li', { class: 'muted' }, 'Nothing waiting.'));
  }

  // Coming back from a thread, keyboard and screen-reader users land on the list's heading.
  return { element, refresh, focus: () => element.querySelector('h2').focus() };
}
