// The reply box of a thread: quick-reply templates that go into the text (to be edited
// before sending), an optional attached file (PNG, JPEG, GIF, PDF or plain text, stored as a
// Binary of the thread), and sending. The typed text survives live refreshes of the thread.
import { announce, h } from '/web/dom.js';

export const QUICK_REPLIES = [
  ['Reviewed', 'Thank you for your message. I have reviewed it.'],
  ['Results normal', 'Your results are normal; no changes are needed.'],
  ['Book a visit', 'Please book an appointment so we can look at this together.'],
  ['Refill sent', 'Your prescription renewal has been sent to your pharmacy.'],
  ['Call us', 'Please call the office so we can talk this through.'],
];

const ACCEPTED = 'image/png,image/jpeg,image/gif,application/pdf,text/plain';

/** `send(text, file)` posts the reply; the form clears once it succeeded. */
export function replyForm({ send }) {
  const text = h('textarea', { id: 'reply-text', name: 'text', rows: 5 });
  const file = h('input', { id: 'reply-file', name: 'file', type: 'file', accept: ACCEPTED });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Send reply');

  const useTemplate = (template) => {
    // A template starts the reply; anything already typed stays after it.
    text.value = text.value.trim() ? `${template}\n${text.value}` : `${template} `;
    text.focus();
    text.setSelectionRange(text.value.length, text.value.length);
  };

  const form = h(
    'form',
    {
      class: 'card reply-form',
      'aria-labelledby': 'reply-title',
      onsubmit: async (event) => {
        event.preventDefault();
        const chosen = file.files?.[0];
        if (!text.value.trim() && !chosen) {
          announce('Write a reply or attach a file first', 'error');
          text.focus();
          return;
        }
        submit.disabled = true;
        try {
          await send(text.value, chosen);
          text.value = '';
          file.value = '';
          announce('Reply sent');
        } catch (err) {
          announce(`The reply was not sent: ${err.message}`, 'error');
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h3', { id: 'reply-title' }, 'Reply'),
    h(
      'div',
      { class: 'quick-replies', role: 'group', 'aria-label': 'Quick replies' },
      QUICK_REPLIES.map(([label, template]) => h('button', { type: 'button', class: 'quick-reply', title: template, onclick: () => useTemplate(template) }, label))
    ),
    h('label', { for: 'reply-text' }, 'Message to the patient'),
    text,
    h('label', { for: 'reply-file' }, 'Attach a file (optional)'),
    file,
    h('div', { class: 'actions' }, submit)
  );
  return form;
}
