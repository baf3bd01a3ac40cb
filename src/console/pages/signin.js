import { api, session } from '../api.js';
import { errorBox, field, fill, h } from '../dom.js';
import { startLive } from '../live.js';

export function render(main, ctx) {
  const input = h('input', { type: 'password', name: 'key', autocomplete: 'off', required: true, spellcheck: 'false' });
  const status = h('div', { 'aria-live': 'assertive' });
  const form = h(
    'form.card.signin',
    {
      onsubmit: async (e) => {
        e.preventDefault();
        fill(status);
        const key = input.value.trim();
        try {
          const who = await api('/v1/whoami', { key });
          session.key = key;
          session.who = who;
          ctx.signedIn();
          startLive();
          ctx.navigate(ctx.landingPage(who));
        } catch (err) {
          fill(status, errorBox(err));
          input.focus();
        }
      },
    },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Use your Meterline API key. It is kept only in this browser tab (session storage) and sent to the gateway with each request.'),
    field('API key', input, 'The key shown once when it was created, e.g. op_…'),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    status,
  );
  main.append(form);
  setTimeout(() => input.focus(), 0);
}
