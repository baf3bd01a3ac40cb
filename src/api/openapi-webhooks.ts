/** The gateway's outbound HTTP calls to billing and field systems, as OpenAPI 3.1 `webhooks`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function addWebhooks(doc: Record<string, any>): void {
  doc.webhooks ??= {};
}
