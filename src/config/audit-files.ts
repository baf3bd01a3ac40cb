import { dirname, join, resolve } from 'node:path';
import { AUDIT_KEY_ENV, auditKeySource, type AuditKeySource } from '../store/audit-key-source.js';
import type { GatewayConfig } from './config-schema.js';

/**
 * Where the audit chain's key and anchors are kept (config `audit`). The defaults suit the demo: both beside the
 * SQLite file, which is outside the database but on the same disk; a deployment keeps the key elsewhere (a secret
 * mount, METERLINE_AUDIT_KEY) and the anchors somewhere the database's users cannot write (a shipped log, WORM).
 */
export function auditKeyFile(config: GatewayConfig): string | null {
  if (config.audit.keyFile) return resolve(config.audit.keyFile);
  return config.store.kind === 'sqlite' ? join(dirname(resolve(config.store.sqlite.path)), 'audit.key') : null;
}

export function auditAnchorFile(config: GatewayConfig): string | null {
  if (config.audit.anchorFile) return resolve(config.audit.anchorFile);
  return config.store.kind === 'sqlite' ? `${resolve(config.store.sqlite.path)}.audit-anchors.jsonl` : null;
}

/** The gateway's key: METERLINE_AUDIT_KEY, else the key file (made there when the log is first keyed). */
export function gatewayAuditKeySource(config: GatewayConfig, env: NodeJS.ProcessEnv, onCreate?: (file: string, keyId: string) => void): AuditKeySource {
  return auditKeySource({ envKey: env[AUDIT_KEY_ENV], file: auditKeyFile(config), mayCreate: true, ...(onCreate ? { onCreate } : {}) });
}
