// Messages: the patient's threads, one thread with its messages in order (attachments,
// the automatic reply to an urgent message), a reply box, and the form that starts a new
// thread with someone on their care team. Message text is always shown as text.
import { formatDateTime, h, render } from '/web/dom.js';
import { flash } from './flash.js';
import { categoryOf, errorText, hasTag, isPatientSide } from './api.js';

const ATTACHMENT_TYPES = 'image/png,image/jpeg,image/gif,application/pdf,text/plain';

function emergencyNotice() {
  return h(
    'p',
    { class: 'notice emergency', role: 'note' },
    h('strong', {}, 'Not for emergencies - call 911. '),
    'Messages are read during office hours. If you might need emergency care, call 911 or go to the nearest emergency department.'
  );
}

/** The practice's reply time for a category (from the message-category CodeSystem). */
function replyTime(category) {
  const days = category?.replyDays;
  return days ? `Expected reply: within ${days} business day${days === 1 ? '' : 's'}.` : 'Expected reply: within a few business days.';
}

let categoriesByCode;
/** The message categories by code, fetched once per page load. */
async function categoryIndex(api) {
  categoriesByCode ??= api
    .categories()
    .then((concepts) => new Map(concepts.map((c) => [c.code, c])))
    .catch(() => new Map());
  return categoriesByCode;
}

export async function showInbox({ api }, target) {
  const [threads, categories] = await Promise.all([api.threads(), categoryIndex(api)]);
  render(
    target,
    h('div', { class: 'view-head' }, h('h2', {}, 'Messages'), h('a', { class: 'button primary', href: '#compose', id: 'new-message' }, 'New message')),
    emergencyNotice(),
    threads.length
      ? h(
          'ul',
          { class: 'list threads', 'aria-label': 'Your conversations' },
          threads.map((t) =>
            h(
              'li',
              {},
              h(
                'a',
                { href: `#thread/${t.header.id}`, class: 'thread-link' },
                h('span', { class: 'thread-topic' }, t.header.topic?.text ?? 'Conversation'),
                t.unread ? h('span', { class: 'badge' }, `${t.unread} new`) : null,
                t.urgent ? h('span', { class: 'badge urgent' }, 'Urgent') : null
              ),
              h(
                'div',
                { class: 'muted thread-meta' },
                `${categories.get(categoryOf(t.header))?.display ?? 'Message'} · ${t.header.status === 'in-progress' ? 'Open' : 'Closed'} · ${t.messages} message${t.messages === 1 ? '' : 's'} · ${formatDateTime(t.last)}`
              )
            )
          )
        )
      : h('p', { class: 'card' }, 'You have no messages yet. Use "New message" to write to your care team.')
  );
}

export async function showThread(app, target, headerId) {
  const { api } = app;
  const [thread, categories] = await Promise.all([api.thread(headerId), categoryIndex(api)]);
  const { header } = thread;
  const messages = await api.markRead(thread.messages);
  const people = await api.names(
    messages.map((m) => m.sender?.reference),
    new Map(messages.map((m) => [m.sender?.reference, m.sender?.display]))
  );
  const open = header.status === 'in-progress';
  render(
    target,
    h('p', {}, h('a', { href: '#messages' }, '← All messages')),
    h('h2', {}, header.topic?.text ?? 'Conversation'),
    h('p', { class: 'muted' }, `${categories.get(categoryOf(header))?.display ?? 'Message'} · ${open ? 'Open' : 'Closed'}`),
    emergencyNotice(),
    open ? h('p', { class: 'reply-time' }, replyTime(categories.get(categoryOf(header)))) : null,
    h(
      'ol',
      { class: 'messages', 'aria-label': 'Messages in this conversation' },
      messages.map((m) => messageItem(api, m, people))
    ),
    open ? replyForm(app, header) : h('p', { class: 'card' }, 'This conversation is closed. Start a new message if you need anything else.')
  );
}

function messageItem(api, message, people) {
  const sender = message.sender?.reference;
  const auto = hasTag(message, 'auto-reply');
  const mine = isPatientSide(sender);
  return h(
    'li',
    { class: `message${mine ? ' mine' : ''}${auto ? ' auto-reply' : ''}`, 'data-id': message.id },
    h(
      'div',
      { class: 'meta' },
      auto ? h('strong', { class: 'urgent' }, 'Automatic reply') : h('strong', {}, people.get(sender) ?? 'Care team'),
      ' · ',
      h('time', { datetime: message.sent ?? '' }, formatDateTime(message.sent)),
      message.priority === 'urgent' && !auto ? h('span', { class: 'badge urgent' }, 'Urgent') : null
    ),
    (message.payload ?? []).map((part) => (part.contentAttachment ? attachmentLink(api, part.contentAttachment) : h('p', { class: 'message-text' }, part.contentString ?? '')))
  );
}

function attachmentLink(api, attachment) {
  const title = attachment.title ?? 'attachment';
  return h(
    'p',
    { class: 'attachment' },
    h(
      'button',
      {
        type: 'button',
        class: 'link',
        onclick: async () => {
          try {
            const blob = await api.binary(attachment.url);
            const url = URL.createObjectURL(blob);
            const a = h('a', { href: url, download: title });
            document.body.append(a);
            a.click();
            a.remove();
            setTimeout(() => URL.revokeObjectURL(url), 10_000);
          } catch (err) {
            flash(`Could not open the attachment: ${errorText(err)}`, 'error');
          }
        },
      },
      `Attachment: ${title}`
    )
  );
}

function replyForm({ api, go }, header) {
  const text = h('textarea', { id: 'reply-text', name: 'text', required: true });
  const file = h('input', { id: 'reply-file', name: 'file', type: 'file', accept: ATTACHMENT_TYPES });
  const button = h('button', { class: 'primary', type: 'submit' }, 'Send');
  const form = h(
    'form',
    {
      class: 'card reply-form',
      'aria-label': 'Reply',
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        try {
          await api.send(header, text.value, file.files[0]);
          // The message appearing in the thread is the confirmation.
          go(`#thread/${header.id}`);
        } catch (err) {
          flash(errorText(err), 'error');
          button.disabled = false;
        }
      },
    },
    h('label', { for: 'reply-text' }, 'Your reply'),
    text,
    h('label', { for: 'reply-file' }, 'Attach a file (optional: picture, PDF or text)'),
    file,
    h('div', { class: 'actions' }, button)
  );
  return form;
}

export async function showCompose({ api, go }, target) {
  const [team, index] = await Promise.all([api.careTeam(), categoryIndex(api)]);
  const categories = [...index.values()].filter((c) => c.patientMay);
  if (!team.length) {
    render(target, h('h2', {}, 'New message'), emergencyNotice(), h('p', { class: 'card' }, 'There is no one on your care team to write to yet. Please call the practice.'));
    return;
  }
  const recipient = h('select', { id: 'recipient', name: 'recipient', required: true }, team.map((t) => h('option', { value: t.reference }, t.name)));
  const category = h('select', { id: 'category', name: 'category', required: true }, categories.map((c) => h('option', { value: c.code }, c.display)));
  const expected = h('p', { class: 'reply-time', id: 'reply-time', 'aria-live': 'polite' }, replyTime(index.get(category.value)));
  category.addEventListener('change', () => render(expected, replyTime(index.get(category.value))));
  const topic = h('input', { id: 'topic', name: 'topic', type: 'text', required: true, maxlength: '200' });
  const text = h('textarea', { id: 'message-text', name: 'text', required: true });
  const file = h('input', { id: 'message-file', name: 'file', type: 'file', accept: ATTACHMENT_TYPES });
  const button = h('button', { class: 'primary', type: 'submit' }, 'Send message');
  render(
    target,
    h('p', {}, h('a', { href: '#messages' }, '← All messages')),
    h('h2', {}, 'New message'),
    emergencyNotice(),
    h(
      'form',
      {
        class: 'card compose',
        'aria-label': 'New message',
        onsubmit: async (event) => {
          event.preventDefault();
          button.disabled = true;
          try {
            const header = await api.startThread({ recipient: recipient.value, category: category.value, topic: topic.value, text: text.value, file: file.files[0] });
            go(`#thread/${header.id}`);
          } catch (err) {
            flash(errorText(err), 'error');
            button.disabled = false;
          }
        },
      },
      h('label', { for: 'recipient' }, 'To'),
      recipient,
      h('label', { for: 'category' }, 'What is it about?'),
      category,
      expected,
      h('label', { for: 'topic' }, 'Subject'),
      topic,
      h('label', { for: 'message-text' }, 'Message'),
      text,
      h('label', { for: 'message-file' }, 'Attach a file (optional: picture, PDF or text)'),
      file,
      h('div', { class: 'actions' }, button)
    )
  );
}
