// One thread: its messages in the order they were sent (sender, time, read state,
// attachments to open or download), the work item (owner, due time; claim, reassign), the
// reply box, forwarding to a colleague or pool, and closing or reopening. Opening the thread
// reads its messages, which is what sets the read receipts of those addressed to the
// practitioner. Live refreshes redraw the messages and the work item, never the reply box.
import { announce, formatDateTime, h, render } from '/web/dom.js';
import { CATEGORIES, categoryOf, hasTag } from './api.js';
import { replyForm } from './reply-form.js';

const PATIENT_SIDE = /^(Patient|RelatedPerson)\//;

export function threadView(app, headerId, { back, onClosed }) {
  const { api, identities } = app;
  let current;
  const title = h('h2', { id: 'thread-title', tabindex: '-1' }, 'Thread');
  const about = h('p', { class: 'meta thread-about' });
  const work = h('div', { class: 'card work-item', 'aria-label': 'Work item', role: 'region' });
  const messages = h('ol', { class: 'messages', 'aria-label': 'Messages' });
  const manage = h('div', { class: 'card manage', role: 'region', 'aria-label': 'Forward or close' });

  const guarded = (label, action) => () =>
    action().catch((err) => {
      announce(`${label} failed: ${err.message}`, 'error');
    });

  const form = replyForm({
    send: async (text, file) => {
      const answered = [...current.messages].reverse().find((m) => PATIENT_SIDE.test(m.sender?.reference ?? '')) ?? current.messages.at(-1);
      await api.reply(current.header, text, { file, inResponseTo: answered?.id });
      await refresh();
    },
  });

  const element = h(
    'section',
    { class: 'thread', 'aria-labelledby': 'thread-title' },
    h('div', { class: 'actions thread-nav' }, h('button', { type: 'button', onclick: back }, '← Back')),
    title,
    about,
    work,
    messages,
    form,
    manage
  );

  async function openAttachment(attachment, download) {
    const blob = await api.binary(attachment.url);
    const url = URL.createObjectURL(blob);
    if (download) {
      const link = h('a', { href: url, download: attachment.title || 'attachment' });
      document.body.append(link);
      link.click();
      link.remove();
    } else {
      window.open(url, '_blank', 'noopener');
    }
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  function messageItem(message, names) {
    const sender = message.sender?.reference;
    const mine = sender === api.me;
    const texts = (message.payload ?? []).filter((p) => typeof p.contentString === 'string');
    const attachments = (message.payload ?? []).map((p) => p.contentAttachment).filter((a) => a?.url);
    return h(
      'li',
      { class: mine ? 'message mine' : 'message', 'data-message': message.id },
      h(
        'div',
        { class: 'meta' },
        h('strong', { class: 'sender' }, mine ? 'You' : names.get(sender) ?? message.sender?.display ?? 'Unknown sender'),
        ' · ',
        h('time', { datetime: message.sent }, formatDateTime(message.sent)),
        ' · ',
        h('span', { class: message.received ? 'read-state read' : 'read-state unread' }, message.received ? `Read ${formatDateTime(message.received)}` : 'Not read yet'),
        message.priority === 'urgent' ? h('span', { class: 'badge urgent' }, 'Urgent') : null,
        hasTag(message, 'auto-reply') ? h('span', { class: 'badge' }, 'Automatic reply') : null
      ),
      texts.map((p) => h('p', { class: 'message-text' }, p.contentString)),
      attachments.map((a) =>
        h(
          'div',
          { class: 'attachment' },
          h('span', {}, `📎 ${a.title || 'Attachment'} (${a.contentType ?? 'file'})`),
          h('button', { type: 'button', onclick: guarded('Opening the attachment', () => openAttachment(a, false)) }, 'Open', h('span', { class: 'visually-hidden' }, ` ${a.title ?? ''}`)),
          h('button', { type: 'button', onclick: guarded('Downloading the attachment', () => openAttachment(a, true)) }, 'Download', h('span', { class: 'visually-hidden' }, ` ${a.title ?? ''}`))
        )
      )
    );
  }

  function workItem(task, names) {
    if (!task) {
      return [h('p', { class: 'muted' }, 'No work item for this thread.')];
    }
    const owner = task.owner?.reference;
    const due = task.restriction?.period?.end;
    const overdue = due && task.status !== 'completed' && Date.parse(due) < Date.now();
    const reassign = h(
      'select',
      { id: 'reassign-to' },
      identities.colleagues.map((c) => h('option', { value: c.reference }, c.name))
    );
    return [
      h(
        'p',
        { class: 'work-line' },
        h('span', { class: 'task-status' }, task.status === 'completed' ? 'Answered' : task.status === 'cancelled' ? 'Cancelled' : 'Waiting for an answer'),
        ' · ',
        h('span', { class: 'owner' }, owner ? `Owner: ${owner === api.me ? 'you' : names.get(owner)}` : 'Unassigned (in the pool)'),
        due ? [' · ', h('span', { class: overdue ? 'due urgent' : 'due' }, overdue ? 'Overdue since ' : 'Due ', h('time', { datetime: due }, formatDateTime(due)))] : null,
        task.priority === 'urgent' ? h('span', { class: 'badge urgent' }, 'Urgent') : null
      ),
      h(
        'div',
        { class: 'row' },
        owner === api.me ? null : h('div', {}, h('button', { type: 'button', onclick: guarded('Claiming', () => assign(task, api.me, 'You now own this thread')) }, 'Claim')),
        identities.colleagues.length
          ? [
              h('div', {}, h('label', { for: 'reassign-to' }, 'Reassign to'), reassign),
              h('div', {}, h('button', { type: 'button', onclick: guarded('Reassigning', () => assign(task, reassign.value, 'Reassigned')) }, 'Reassign')),
            ]
          : null
      ),
    ];
  }

  function manageItems(header) {
    const target = h(
      'select',
      { id: 'forward-to' },
      identities.colleagues.length ? h('optgroup', { label: 'Colleagues' }, identities.colleagues.map((c) => h('option', { value: c.reference }, c.name))) : null,
      identities.pools.length ? h('optgroup', { label: 'Pools' }, identities.pools.map((p) => h('option', { value: p.reference }, p.name))) : null
    );
    const open = header.status === 'in-progress';
    return [
      identities.colleagues.length || identities.pools.length
        ? h(
            'div',
            { class: 'row' },
            h('div', {}, h('label', { for: 'forward-to' }, 'Forward to a colleague or pool'), target),
            h('div', {}, h('button', { type: 'button', onclick: guarded('Forwarding', () => forward(target.value)) }, 'Forward'))
          )
        : null,
      h(
        'div',
        { class: 'actions' },
        open
          ? h('button', { type: 'button', class: 'close-thread', onclick: guarded('Closing', close) }, 'Close thread')
          : h('button', { type: 'button', onclick: guarded('Reopening', reopen) }, 'Reopen thread')
      ),
    ];
  }

  async function assign(task, owner, done) {
    await api.assign(task, owner);
    announce(done);
    await refresh();
  }

  async function forward(target) {
    await api.forward(current.header, current.task, target);
    announce('Forwarded');
    await refresh();
  }

  async function close() {
    await api.close(current.header);
    announce('Thread closed');
    onClosed();
  }

  async function reopen() {
    await api.write('PATCH', `Communication/${headerId}`, [{ op: 'replace', path: '/status', value: 'in-progress' }], 'application/json-patch+json');
    announce('Thread reopened');
    await refresh();
  }

  let latest = 0;
  async function refresh() {
    // A ping can arrive while a refresh runs: only the newest one may draw.
    const mine = ++latest;
    const loaded = await api.thread(headerId);
    loaded.messages = await api.markRead(loaded.messages, identities.references);
    const { header, task } = loaded;
    const references = [header.subject?.reference, task?.owner?.reference, ...(header.recipient ?? []).map((r) => r.reference), ...loaded.messages.map((m) => m.sender?.reference)];
    const displays = new Map(loaded.messages.map((m) => [m.sender?.reference, m.sender?.display]));
    const names = await api.names(references, displays);
    if (mine !== latest) {
      return;
    }
    current = loaded;
    title.textContent = header.topic?.text || 'Message';
    render(
      about,
      h('span', { class: 'patient' }, names.get(header.subject?.reference)),
      h('span', {}, CATEGORIES[categoryOf(header)] ?? categoryOf(header) ?? ''),
      h('span', { class: 'thread-status' }, header.status === 'in-progress' ? 'Open' : 'Closed'),
      h('span', {}, `To ${(header.recipient ?? []).map((r) => (r.reference === api.me ? 'you' : names.get(r.reference) ?? r.reference)).join(', ')}`)
    );
    render(work, workItem(task, names));
    render(messages, loaded.messages.length ? loaded.messages.map((m) => messageItem(m, names)) : h('li', { class: 'muted' }, 'No messages yet.'));
    render(manage, manageItems(header));
  }

  return { element, refresh, focus: () => title.focus() };
}
