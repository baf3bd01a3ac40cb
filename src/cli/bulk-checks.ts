import { CliError } from './api-client.js';

/**
 * What `meterline bulk` tells the user about the file's meters: ids given more than once (each line is an order, so
 * a later one for the same meter supersedes the earlier), and, when the gateway refuses the file for unknown
 * meters, which ones.
 */

/** One warning per meter id that occurs more than once, with the positions (1-based) of its orders in the file. */
export function duplicateWarnings(file: string, meterIds: readonly string[]): string[] {
  const at = new Map<string, number[]>();
  meterIds.forEach((id, i) => at.set(id, [...(at.get(id) ?? []), i + 1]));
  const dups = [...at].filter(([, positions]) => positions.length > 1);
  if (dups.length === 0) return [];
  return [
    `meterline: warning: ${dups.length} meter id(s) occur more than once in ${file}; each is an order, and a later one for a meter supersedes an earlier:`,
    ...dups.map(([id, positions]) => `  ${id}: orders ${positions.join(', ')}`),
  ];
}

/**
 * The gateway's E_METER_NOT_FOUND for a bulk request, with the unknown meters named: from the error's details
 * (`missing`, the first 100), else the meters sent that its message names. Other errors pass unchanged.
 */
export function nameUnknownMeters(err: unknown, sent: readonly string[]): unknown {
  if (!(err instanceof CliError) || err.code !== 'E_METER_NOT_FOUND') return err;
  const details = err.details as { missing?: { index: number; meterId: string }[] } | undefined;
  const listed = details?.missing?.map((m) => m.meterId) ?? sent.filter((id) => err.message.includes(id));
  const unknown = [...new Set(listed)];
  if (unknown.length === 0) return err;
  // The gateway names at most its first 100 and counts them all in its message.
  const total = Number(/^(\d+) order/.exec(err.message)?.[1] ?? 0);
  const shown = details?.missing?.length ?? listed.length;
  const more = total > shown ? ` (those of the first ${shown} of ${total} orders)` : '';
  return new CliError(err.exitCode, err.code, `${err.message}\n  unknown meters${more}: ${unknown.join(', ')}`, err.details);
}
