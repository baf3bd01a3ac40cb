import { MeterlineError } from '../errors.js';

/**
 * A port the gateway could not bind, as E_PORT_IN_USE naming the setting, the address and what to do. Binding
 * comes before anything goes on the wire, so a start that fails here has sent nothing.
 */
export function bindError(err: unknown, what: string, envName: string): unknown {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const where = e.address !== undefined ? ` (${e.address}:${e.port ?? '?'})` : '';
  if (e.code === 'EADDRINUSE') {
    return new MeterlineError('E_PORT_IN_USE', `${what}${where} is already in use by another process: stop that process, or choose another port (${envName}); nothing was sent to any meter`, {
      code: e.code,
    });
  }
  if (e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
    const why = e.code === 'EACCES' ? 'binding it is not permitted (ports below 1024 need privileges)' : 'the address is not on this host';
    return new MeterlineError('E_PORT_IN_USE', `${what}${where} could not be bound: ${why} (${e.code}); choose another (${envName}); nothing was sent to any meter`, { code: e.code });
  }
  return err;
}
