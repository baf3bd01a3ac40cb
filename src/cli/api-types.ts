import type { paths } from './generated/openapi-types.js';

/**
 * Names for parts of the generated API types (src/cli/generated/openapi-types.ts), so the CLI's code says which
 * operation a value belongs to: `QueryOf<'/v1/alerts', 'get'>['state']`, `BodyOf<'/v1/keys', 'post'>['role']`.
 */
type Method = 'get' | 'put' | 'post' | 'delete';
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;

/** The query parameters of an operation. */
export type QueryOf<P extends keyof paths, M extends Method> = NonNullable<Operation<P, M> extends { parameters: { query?: infer Q } } ? Q : never>;

/** The JSON request body of an operation. */
export type BodyOf<P extends keyof paths, M extends Method> = Operation<P, M> extends { requestBody?: { content: { 'application/json': infer B } } } ? B : never;

/** The JSON answer of an operation with the given status. */
export type AnswerOf<P extends keyof paths, M extends Method, S extends number = 200> = Operation<P, M> extends { responses: { [K in S]: { content: { 'application/json': infer A } } } } ? A : never;
