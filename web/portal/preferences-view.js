// Notifications: how the signed-in person is told that a new message is waiting (e-mail,
// text message or not at all). Notices never contain the message itself.
import { h, render } from '/web/dom.js';
import { flash } from './flash.js';
import { errorText } from './api.js';

const LABELS = { email: 'E-mail', sms: 'Text message (SMS)', none: 'No notifications' };

export async function showPreferences({ api }, target) {
  const view = await api.preference();
  const available = new Set(view.available);
  const choices = ['email', 'sms', 'none'].map((channel) =>
    h(
      'div',
      { class: 'choice' },
      h('input', { type: 'radio', name: 'channel', id: `channel-${channel}`, value: channel, checked: channel === view.channel, disabled: !available.has(channel) && channel !== view.channel }),
      h('label', { for: `channel-${channel}`, class: 'inline' }, LABELS[channel], !available.has(channel) ? h('span', { class: 'muted' }, ' (not available: no address or number on file)') : null)
    )
  );
  const button = h('button', { class: 'primary', type: 'submit' }, 'Save');
  render(
    target,
    h('h2', {}, 'Notifications'),
    h('p', {}, 'When your care team writes to you, we let you know that a message is waiting. The notice never includes the message.'),
    view.unavailableReason ? h('p', { class: 'notice' }, view.unavailableReason) : null,
    h(
      'form',
      {
        class: 'card',
        onsubmit: async (event) => {
          event.preventDefault();
          const chosen = event.currentTarget.querySelector('input[name="channel"]:checked')?.value;
          button.disabled = true;
          try {
            await api.setPreference(chosen);
            flash('Saved');
          } catch (err) {
            flash(errorText(err), 'error');
          } finally {
            button.disabled = false;
          }
        },
      },
      h('fieldset', {}, h('legend', {}, 'Tell me about new messages by'), choices),
      h('div', { class: 'actions' }, button)
    )
  );
}
