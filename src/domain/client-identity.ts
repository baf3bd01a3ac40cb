import { randomBytes } from 'node:crypto';

/**
 * Who is acting (DESIGN.md §8): a client (a billing system, a person) is an id, and its keys belong to it; its name
 * is a label that decides nothing, and two clients may carry the same one. Payments, the callback URL and the change
 * feed belong to a client id; maker–checker compares client ids; an Idempotency-Key is scoped to the client id.
 */

/** Clients created through the API get `cli_` and 16 random hex digits. No configured name may start so. */
export const GENERATED_CLIENT_PREFIX = 'cli_';

export const newClientId = (): string => `${GENERATED_CLIENT_PREFIX}${randomBytes(8).toString('hex')}`;

/**
 * The client of a key from configuration (`auth.keys`) or of a demo key: its configured name, verbatim. It is stable
 * across restarts, it is the identity the key's rows were written under before clients had ids, and it cannot be a
 * generated id (the configuration refuses names starting with `cli_`). Keys configured under one name are one client.
 */
export const configuredClientId = (name: string): string => name;
