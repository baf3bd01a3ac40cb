import { createHash, randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { PolicyConfig } from '../domain/policy/policy-config.js';
import { DISCONNECT_REASONS, type DisconnectReason } from '../domain/switch-order.js';
import { MeterlineError } from '../errors.js';
import { API_KEY_USE_GRANULARITY_MS } from '../store/store.js';

/** Roles (DESIGN.md §5, issue 6) and what each may do. The README's role matrix is generated from this table. */
export const ROLES = ['operator', 'billing', 'field', 'supervisor', 'auditor', 'admin'] as const;
export type Role = (typeof ROLES)[number];

const ALL: readonly Role[] = ROLES;
export const PERMISSIONS = {
  'order:reconnect': ['operator', 'billing'],
  /** Disconnects for non-payment additionally need an approved plan (the policy gate refuses them otherwise). */
  'order:disconnect': ['operator'],
  'order:bulk': ['operator'],
  /** Set or remove a meter's demand limit (DOMAIN.md rule 10): billing limits for arrears and lifts on payment. */
  'order:limit': ['operator', 'billing'],
  'order:read': ALL,
  /** Withdraw an order not yet on the wire (with a reason, audited). */
  'order:cancel': ['operator', 'supervisor'],
  /** Approve one disconnect that waits for a supervisor (a protected customer's request or move-out, a safety cut at a medical-equipment customer). */
  'order:approve': ['supervisor'],
  'meter:read': ALL,
  'meter:write': ['operator', 'admin'],
  'facts:write': ['billing', 'operator'],
  'plan:draft': ['operator', 'billing'],
  'plan:approve': ['supervisor'],
  'plan:cancel': ['operator', 'billing', 'supervisor'],
  'plan:read': ['operator', 'billing', 'supervisor', 'auditor', 'admin'],
  'policy:read': ALL,
  'policy:write': ['supervisor', 'admin'],
  'audit:read': ['auditor', 'supervisor', 'admin'],
  'key:manage': ['admin'],
  /** Import a manufacturer's meter key file (DLMS keys, stored envelope-encrypted). */
  'meterkeys:import': ['admin'],
  /** A meter's key set ids, states and times (never key bytes). */
  'meterkeys:read': ['admin'],
  /** Renew a meter's DLMS keys on the meter (global_key_transfer). */
  'meterkeys:renew': ['admin'],
  'workorder:read': ['field', 'operator', 'supervisor', 'auditor', 'admin'],
  'workorder:update': ['field', 'operator'],
  'stats:read': ALL,
  'breaker:reset': ['operator', 'supervisor'],
  /** Acknowledge an alert (seen, being handled) and clear it (over). */
  'alert:manage': ['operator', 'supervisor'],
  'monitoring:run': ['operator', 'supervisor'],
  'payment:write': ['billing'],
  'payment:read': ['billing', 'operator', 'supervisor', 'auditor', 'admin'],
  'callback:manage': ['billing'],
  'changes:read': ['billing', 'operator'],
} as const satisfies Record<string, readonly Role[]>;
export type Permission = keyof typeof PERMISSIONS;

/**
 * Who may name which disconnect reason on a direct order (single, bulk, CLI, console): DOMAIN.md rule 7, "a
 * reason is a claim, not an authority". The README's reason table is checked against this one. What each reason
 * then needs and which rules it passes is `REASON_RULES` in src/domain/policy/disconnect-gate.ts.
 * - arrears: through an approved plan only (drafted by `plan:draft`, approved by another person's `plan:approve`);
 *   a direct order is refused E_PLAN_REQUIRED unless `policy.nonPaymentRequiresPlan` is off.
 * - credit_exhausted: nobody; only the gateway's own credit control, from the ledger (E_CREDIT_CUTOFF_RESERVED).
 */
export const DISCONNECT_REASON_ROLES: Readonly<Record<DisconnectReason, readonly Role[]>> = {
  arrears: ['operator'],
  credit_exhausted: [],
  customer_request: ['operator'],
  vacant_premises: ['operator'],
  safety: ['operator'],
};

/** The disconnect reasons a role can use on a direct order that the rules could let through (what the console and CLI offer). */
export function usableDisconnectReasons(role: Role, policy: Pick<PolicyConfig, 'nonPaymentRequiresPlan'>): DisconnectReason[] {
  return DISCONNECT_REASONS.filter((r) => DISCONNECT_REASON_ROLES[r].includes(role) && !(r === 'arrears' && policy.nonPaymentRequiresPlan));
}

/** Throws unless `role` may name `reason` on a direct disconnect order. */
export function checkDisconnectReason(role: Role, reason: DisconnectReason): void {
  if (reason === 'credit_exhausted') {
    throw new MeterlineError('E_CREDIT_CUTOFF_RESERVED', 'reason credit_exhausted is reserved to the gateway’s own credit control, which cuts off only while the meter’s ledger shows no credit; no API key may name it');
  }
  const roles = DISCONNECT_REASON_ROLES[reason];
  if (!roles.includes(role)) {
    throw new MeterlineError('E_REASON_NOT_ALLOWED', `the ${role} role may not disconnect for ${reason}; ${roles.length > 0 ? `roles that may: ${roles.join(', ')}` : 'no role may'}`);
  }
}

/**
 * Who is calling (DESIGN.md §8: an identity is an id, a name is only a label). Every decision about "who" compares
 * `clientId`: ownership of billing data and the callback URL, maker–checker, the scope of Idempotency-Keys, the
 * actor recorded in orders, plans and the audit. `name` is shown to people and decides nothing.
 */
export interface Principal {
  /** The client (a billing system, a person) the key belongs to; all of a client's keys act as one identity. */
  clientId: string;
  /** The client's label. Two clients may carry the same one. */
  name: string;
  role: Role;
  /** The stored key's id, for keys managed through the API. */
  keyId?: string;
}

export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

/** A new random API key (the caller stores only its sha256). */
export const newApiKey = (prefix: string): string => `${prefix}_${randomBytes(24).toString('base64url')}`;

/** Looks up keys managed through the API (stored hashed), so a revoked key is refused on its next request. */
export interface StoredKeyLookup {
  findApiKey(sha256: string): Promise<{ id: string; clientId: string; name: string; role: string; revokedAt: number | null } | undefined>;
  /** Record a key's use (the keys page shows when each key was last used). */
  touchApiKey?(id: string, now: number): Promise<void>;
}

/** API keys by their hash: bootstrap keys from configuration (and demo keys), then keys in the store. */
export class ApiKeyRegistry {
  private readonly byHash = new Map<string, Principal>();
  /** When this instance last recorded each stored key's use: at most one write a minute per key, whatever the traffic. */
  private readonly usedAt = new Map<string, number>();

  constructor(private readonly stored?: StoredKeyLookup) {}

  add(sha256: string, principal: Principal): void {
    this.byHash.set(sha256, principal);
  }

  /** The clients of the keys from configuration and the demo keys (registered in the store so keys can be issued to them). */
  configuredClients(): { id: string; name: string }[] {
    return [...new Map([...this.byHash.values()].map((p) => [p.clientId, { id: p.clientId, name: p.name }])).values()];
  }

  /** Record the use in the background; a store that cannot take the write (full disk) must not refuse the request. */
  private noteUse(keyId: string): void {
    const now = Date.now();
    if (!this.stored?.touchApiKey || now - (this.usedAt.get(keyId) ?? -Infinity) < API_KEY_USE_GRANULARITY_MS) return;
    this.usedAt.set(keyId, now);
    this.stored.touchApiKey(keyId, now).catch(() => this.usedAt.delete(keyId));
  }

  /** Resolve `Authorization: Bearer <key>`; throws E_UNAUTHORIZED. */
  async authenticate(header: string | undefined): Promise<Principal> {
    const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!match) throw new MeterlineError('E_UNAUTHORIZED', 'send your API key as "Authorization: Bearer <key>"');
    const hash = sha256Hex(match[1]!);
    const fixed = this.byHash.get(hash);
    if (fixed) return fixed;
    const stored = await this.stored?.findApiKey(hash);
    if (stored && stored.revokedAt === null && (ROLES as readonly string[]).includes(stored.role)) {
      this.noteUse(stored.id);
      return { clientId: stored.clientId, name: stored.name, role: stored.role as Role, keyId: stored.id };
    }
    if (stored) throw new MeterlineError('E_UNAUTHORIZED', `this API key (${stored.id}) was revoked; ask an administrator for a new one`);
    throw new MeterlineError('E_UNAUTHORIZED', 'this API key is not known to the gateway; ask an administrator for a valid key');
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

/**
 * A route guard, for the route's `onRequest` hook: the caller must hold a key whose role has `permission`.
 * `onRequest` runs before fastify reads, parses or validates the body (DESIGN.md §8: no work for an unknown caller),
 * so a refused caller's body is never read; the error handler closes the connection instead of draining it.
 */
export function requirePermission(keys: ApiKeyRegistry, permission: Permission) {
  return checksPermission(permission, async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const principal = await keys.authenticate(request.headers.authorization);
    if (!(PERMISSIONS[permission] as readonly Role[]).includes(principal.role)) {
      throw new MeterlineError('E_FORBIDDEN', `the ${principal.role} role may not ${permission.replace(':', ' ')}; use a key with one of the roles: ${PERMISSIONS[permission].join(', ')}`);
    }
    request.principal = principal;
  });
}

/** The permission each route guard checks: the OpenAPI document lists 403 and the roles from it. */
const GUARD_PERMISSIONS = new WeakMap<object, Permission>();

/** Marks `guard` as checking `permission` (for a guard written by hand, like the event stream's). */
export function checksPermission<T extends object>(permission: Permission, guard: T): T {
  GUARD_PERMISSIONS.set(guard, permission);
  return guard;
}

/** The permission a route's `onRequest` hook (or hooks) checks, if any. */
export function permissionOfGuard(onRequest: unknown): Permission | undefined {
  for (const hook of Array.isArray(onRequest) ? onRequest : [onRequest]) {
    if (typeof hook === 'function' && GUARD_PERMISSIONS.has(hook)) return GUARD_PERMISSIONS.get(hook);
  }
  return undefined;
}

/** A route guard, for `onRequest`, that any valid key passes (`GET /v1/whoami`). */
export function requireAnyKey(keys: ApiKeyRegistry) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    request.principal = await keys.authenticate(request.headers.authorization);
  };
}
