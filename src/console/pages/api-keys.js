// API keys (admins, key:manage): list, create, rotate, revoke. A new secret is shown once, in this page only: it is
// kept in no variable that outlives the page and never in sessionStorage or localStorage.
import { api } from '../api.js';
import { announce, badge, errorBox, field, fill, fmtTime, h, newIdempotencyKey, select, table, showOutcome } from '../dom.js';

const ROLES = ['operator', 'billing', 'field', 'supervisor', 'auditor', 'admin'];

/** The one-time secret: a read-only field, a copy button and the warning that it will not be shown again. */
function secretBox(title, k) {
  const input = h('input', { id: 'new-secret', type: 'text', readonly: true, value: k.key, spellcheck: 'false', autocomplete: 'off', class: 'secret' });
  const copied = h('span', { role: 'status' });
  const copy = async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(input.value);
      copied.textContent = 'Copied.';
    } catch {
      // No clipboard permission (plain http, an old browser): the text is selected for Ctrl+C.
      copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
    }
  };
  return h(
    'div.secret-box',
    { role: 'region', 'aria-labelledby': 'h-secret' },
    h('h3', { id: 'h-secret' }, title),
    h('p.warning', {}, h('strong', {}, 'This secret is shown once and will not be shown again. '), 'Copy it now and give it to its holder; the gateway keeps only its SHA-256. A lost secret is replaced by rotating the key.'),
    field(`Secret of key ${k.id} (${k.role} of ${k.name})`, input),
    h('div.actions', {}, h('button.primary', { type: 'button', onclick: copy }, 'Copy the secret'), copied),
  );
}

export async function render(main) {
  const list = h('div');
  const result = h('div', { id: 'key-result', 'aria-live': 'polite' });
  const name = h('input', { name: 'name', required: true, maxlength: 100, autocomplete: 'off', placeholder: 'e.g. crew-east-2' });
  const role = select('role', ROLES, 'operator');
  const createButton = h('button.primary', { type: 'submit' }, 'Create key');
  main.append(
    h('h1', {}, 'API keys'),
    h(
      'section.card',
      { 'aria-labelledby': 'h-new-key' },
      h('h2', { id: 'h-new-key' }, 'New key'),
      h(
        'form.inline-form',
        {
          onsubmit: async (e) => {
            e.preventDefault();
            createButton.disabled = true;
            try {
              const k = await api('/v1/keys', { method: 'POST', body: { name: name.value.trim(), role: role.value }, idempotencyKey: newIdempotencyKey('key-create') });
              fill(result, secretBox(`New ${k.role} key for ${k.name}`, k));
              announce(`Key ${k.id} created. Its secret is shown once.`);
              name.value = '';
              await load();
            } catch (err) {
              fill(result, errorBox(err));
            } finally {
              createButton.disabled = false;
            }
          },
        },
        field('Name (a new client: a person or a system)', name),
        field('Role', role),
        createButton,
      ),
      result,
    ),
    h('section.card', { 'aria-labelledby': 'h-keys' }, h('h2', { id: 'h-keys' }, 'Keys'), h('p.muted', {}, 'Keys from the configuration file and the demo keys are not listed: they are changed in the configuration.'), list),
  );

  const rotate = async (k) => {
    if (!window.confirm(`Rotate key ${k.id} (${k.role} of ${k.name})? Its current secret stops working at once.`)) return;
    try {
      const r = await api(`/v1/keys/${encodeURIComponent(k.id)}/rotate`, { method: 'POST', idempotencyKey: newIdempotencyKey('key-rotate') });
      fill(result, secretBox(`New secret for key ${r.id}`, r));
      announce(`Key ${r.id} rotated. Its new secret is shown once.`);
    } catch (err) {
      fill(result, errorBox(err));
    }
    await load();
  };
  const revoke = async (k) => {
    if (!window.confirm(`Revoke key ${k.id} (${k.role} of ${k.name})? It is refused from its next request on; this cannot be undone.`)) return;
    await showOutcome(result, async () => {
      const r = await api(`/v1/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE', idempotencyKey: newIdempotencyKey('key-revoke') });
      return `Key ${r.id} (${r.role} of ${r.name}) revoked.`;
    });
    await load();
  };

  const load = async () => {
    try {
      const { items } = await api('/v1/keys');
      const rows = items.slice().sort((a, b) => (a.revokedAt ? 1 : 0) - (b.revokedAt ? 1 : 0) || Date.parse(b.createdAt) - Date.parse(a.createdAt));
      fill(
        list,
        table(
          `${items.length} key(s), in use first`,
          [
            { label: 'Key', cell: (k) => [h('strong', {}, k.id), h('div.muted', {}, `client ${k.clientId}`)] },
            { label: 'Name', cell: (k) => k.name },
            { label: 'Role', cell: (k) => k.role },
            { label: 'State', cell: (k) => (k.revokedAt ? [badge('revoked', 'cancelled'), h('div.muted', {}, fmtTime(k.revokedAt))] : badge('active', 'up')) },
            { label: 'Created', cell: (k) => [fmtTime(k.createdAt), h('div.muted', {}, `by ${k.createdBy}`)] },
            { label: 'Last used', cell: (k) => (k.lastUsedAt ? fmtTime(k.lastUsedAt) : 'never') },
            {
              label: 'Actions',
              cell: (k) =>
                k.revokedAt
                  ? h('span.muted', {}, 'none')
                  : h(
                      'div.row-actions',
                      {},
                      h('button', { type: 'button', 'aria-label': `Rotate key ${k.id}`, onclick: () => rotate(k) }, 'Rotate'),
                      h('button.danger', { type: 'button', 'aria-label': `Revoke key ${k.id}`, onclick: () => revoke(k) }, 'Revoke'),
                    ),
            },
          ],
          rows,
          { class: 'keys', stack: true, empty: 'No keys made here yet.', rowData: (k) => ({ key: k.id }) },
        ),
      );
    } catch (err) {
      fill(list, errorBox(err));
    }
  };
  await load();
}
