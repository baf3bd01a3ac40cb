import { createHash, randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MeterlineError } from '../errors.js';

/** Roles and what each may do. Issue-by-issue more roles come (field, supervisor, auditor, admin). */
export const ROLES = ['operator', 'billing'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = {
  'order:reconnect': ['operator', 'billing'],
  'order:disconnect': ['operator'],
  'order:bulk': ['operator'],
  'order:read': ['operator', 'billing'],
  'meter:read': ['operator', 'billing'],
  'meter:write': ['operator'],
} as const satisfies Record<string, readonly Role[]>;
export type Permission = keyof typeof PERMISSIONS;

export interface Principal {
  name: string;
  role: Role;
}

export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

/** A new random API key (the caller stores only its sha256). */
export const newApiKey = (prefix: string): string => `${prefix}_${randomBytes(24).toString('base64url')}`;

/** API keys by their hash; the keys themselves are never kept. */
export class ApiKeyRegistry {
  private readonly byHash = new Map<string, Principal>();

  add(sha256: string, principal: Principal): void {
    this.byHash.set(sha256, principal);
  }

  /** Resolve `Authorization: Bearer <key>`; throws E_UNAUTHORIZED. */
  authenticate(header: string | undefined): Principal {
    const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
    if (!match) throw new MeterlineError('E_UNAUTHORIZED', 'send your API key as "Authorization: Bearer <key>"');
    const principal = this.byHash.get(sha256Hex(match[1]!));
    if (!principal) throw new MeterlineError('E_UNAUTHORIZED', 'this API key is not known to the gateway; ask an administrator for a valid key');
    return principal;
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
    const principal = keys.authenticate(request.headers.authorization);
    if (!(PERMISSIONS[permission] as readonly Role[]).includes(principal.role)) {
      throw new MeterlineError('E_FORBIDDEN', `the ${principal.role} role may not ${permission.replace(':', ' ')}; use a key with one of the roles: ${PERMISSIONS[permission].join(', ')}`);
    }
    request.principal = principal;
  };
}
