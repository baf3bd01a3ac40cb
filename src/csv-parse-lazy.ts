import { createRequire } from 'node:module';
import type { parse as parseType } from 'csv-parse/sync';

let parse: typeof parseType | undefined;

/**
 * csv-parse's synchronous `parse`, loaded on the first CSV read (a meter-facts or key-file upload) rather than at start
 * (issue 19: the main thread's fixed heap; csv-parse is ~0.4 MiB of it). The same parser (its CommonJS build), the same
 * options, the same records and errors.
 */
export const parseCsv: typeof parseType = ((input: unknown, options?: unknown) => {
  parse ??= (createRequire(import.meta.url)('csv-parse/sync') as { parse: typeof parseType }).parse;
  return (parse as (i: unknown, o?: unknown) => unknown)(input, options);
}) as typeof parseType;
