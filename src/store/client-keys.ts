import { randomBytes } from 'node:crypto';
import { newClientId } from '../domain/client-identity.js';
import { MeterlineError } from '../errors.js';
import { apiKeyFromRow } from './store-rows.js';
import { sql, type Script } from './store-scripts.js';
import { API_KEY_USE_GRANULARITY_MS, type ApiKeyRecord, type NewApiKey } from './store.js';

/**
 * Clients and their API keys, written once for both stores (store-scripts.ts). A client (a billing system, a person)
 * is an id; its keys act as it. Only a key's SHA-256 is stored; rotation replaces it and keeps the key's client;
 * revocation takes effect on the key's next request.
 */

function* keyById(id: string): Script<ApiKeyRecord | undefined> {
  const [row] = yield sql('SELECT * FROM api_keys WHERE id = ?', id);
  return row ? apiKeyFromRow(row) : undefined;
}

/** GatewayStore.createApiKey: a key for an existing client, or a new client (whatever its label) and its first key. */
export function* createApiKey(key: NewApiKey, actor: string, now: number): Script<ApiKeyRecord> {
  let client: { id: string; name: string };
  if ('id' in key.client) {
    const [row] = yield sql('SELECT id, name FROM clients WHERE id = ?', key.client.id);
    if (!row) throw new MeterlineError('E_CLIENT_NOT_FOUND', `client ${key.client.id} does not exist; give a name instead of a clientId to create a new client`);
    client = { id: row.id as string, name: row.name as string };
  } else {
    client = { id: newClientId(), name: key.client.name };
    yield sql('INSERT INTO clients (id, name, created_by, created_at) VALUES (?, ?, ?, ?)', client.id, client.name, actor, now);
    yield { audit: { at: now, actor, action: 'client.create', target: client.id, details: { after: client } } };
  }
  const id = `key_${randomBytes(8).toString('hex')}`;
  yield sql('INSERT INTO api_keys (id, client_id, name, role, sha256, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)', id, client.id, client.name, key.role, key.sha256, actor, now);
  const rec = (yield* keyById(id))!;
  yield { audit: { at: now, actor, action: 'key.create', target: id, details: { after: rec } } };
  return rec;
}

/** GatewayStore.registerClients: the configured clients, created or relabelled (ON CONFLICT: instances start together). */
export function* registerClients(clients: readonly { id: string; name: string }[], now: number): Script<void> {
  for (const c of clients) {
    yield sql(`INSERT INTO clients (id, name, created_by, created_at) VALUES (?, ?, 'configuration', ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name`, c.id, c.name, now);
  }
}

/** GatewayStore.rotateApiKey: a new hash for a key not revoked; its client stays. */
export function* rotateApiKey(id: string, sha256: string, actor: string, now: number): Script<ApiKeyRecord | undefined> {
  yield { lock: `meterline:key:${id}` };
  const before = yield* keyById(id);
  if (!before || before.revokedAt !== null) return undefined;
  yield sql('UPDATE api_keys SET sha256 = ? WHERE id = ?', sha256, id);
  yield { audit: { at: now, actor, action: 'key.rotate', target: id, details: { before, after: before } } };
  return before;
}

/** GatewayStore.revokeApiKey (revoking a revoked key changes nothing). */
export function* revokeApiKey(id: string, actor: string, now: number): Script<ApiKeyRecord | undefined> {
  yield { lock: `meterline:key:${id}` };
  const before = yield* keyById(id);
  if (!before) return undefined;
  if (before.revokedAt === null) {
    yield sql('UPDATE api_keys SET revoked_at = ? WHERE id = ?', now, id);
    yield { audit: { at: now, actor, action: 'key.revoke', target: id, details: { before, after: { ...before, revokedAt: now } } } };
  }
  return yield* keyById(id);
}

/** GatewayStore.findApiKey. */
export function* findApiKey(sha256: string): Script<(ApiKeyRecord & { sha256: string }) | undefined> {
  const [row] = yield sql('SELECT * FROM api_keys WHERE sha256 = ?', sha256);
  return row ? { ...apiKeyFromRow(row), sha256 } : undefined;
}

/** GatewayStore.listApiKeys. */
export function* listApiKeys(): Script<ApiKeyRecord[]> {
  return (yield sql('SELECT * FROM api_keys ORDER BY created_at, id')).map(apiKeyFromRow);
}

export function* touchApiKey(id: string, now: number): Script<void> {
  yield sql('UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)', now, id, now - API_KEY_USE_GRANULARITY_MS);
}
