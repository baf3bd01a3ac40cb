/**
 * The stable `operationId` of every operation in the OpenAPI document, keyed `"<METHOD> <path>"` with the path as
 * the document writes it (`/v1/meters/{meterId}/reconnect`). Client generators name their functions after these,
 * so a rename breaks every billing client generated from us: add, never rename. A test checks that every served
 * operation has one and that no entry is left over.
 */
export const OPERATION_IDS: Readonly<Record<string, string>> = {};
