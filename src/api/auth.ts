import { createHash, randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MeterlineError } from '../errors.js';

/** Roles (DESIGN.md §5, issue 6) and what each may do. The README's role matrix is generated from this table. */
export const ROLES = ['operator', 'billing', 'field', 'supervisor', 'auditor', 'admin'] as const;
export type Role = (typeof ROLES)[number];

const ALL: readonly Role[] = ROLES;
export const PERMISSIONS = {
  'order:reconnect': ['operator', 'billing'],
  /** Disconnects for non-payment additionally need an approved plan (the policy gate refuses them otherwise). */
  'order:disconnect': ['operator'],
  'order:bulk': ['operator'],
  'order:read': ALL,
  /** Withdraw an order not yet on the wire (with a reason, audited). */
  'order:cancel': ['operator', 'supervisor'],
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
  'workorder:read': ['field', 'operator', 'supervisor', 'auditor', 'admin'],
  'workorder:update': ['field', 'operator'],
  'stats:read': ALL,
  'breaker:reset': ['operator', 'supervisor'],
  'monitoring:run': ['operator', 'supervisor'],
  'payment:write': ['billing'],
  'payment:read': ['billing', 'operator', 'supervisor', 'auditor', 'admin'],
  'callback:manage': ['billing'],
  'changes:read': ['billing', 'operator'],
} as const satisfies Record<string, readonly Role[]>;
export type Permission = keyof typeof PERMISSIONS;

export interface Principal {
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
  findApiKey(sha256: string): Promise<{ id: string; name: string; role: string; revokedAt: number | null } | undefined>;
}

/** API keys by their hash: bootstrap keys from configuration (and demo keys), then keys in the store. */
export class ApiKeyRegistry {
  private readonly byHash = new Map<string, Principal>();

  constructor(private readonly stored?: StoredKeyLookup) {}

  add(sha256: string, principal: Principal): void {
    this.byHash.set(sha256, principal);
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
      return { name: stored.name, role: stored.role as Role, keyId: stored.id };
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

/** A route guard: the caller must hold a key whose role has `permission`. */
export function requirePermission(keys: ApiKeyRegistry, permission: Permission) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const principal = await keys.authenticate(request.headers.authorization);
    if (!(PERMISSIONS[permission] as readonly Role[]).includes(principal.role)) {
      throw new MeterlineError('E_FORBIDDEN', `the ${principal.role} role may not ${permission.replace(':', ' ')}; use a key with one of the roles: ${PERMISSIONS[permission].join(', ')}`);
    }
    request.principal = principal;
  };
}
