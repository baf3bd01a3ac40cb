import { Parser } from '@asyncapi/parser';

/**
 * An AsyncAPI document's errors as the AsyncAPI parser from npm sees them (what meter makers' tooling runs); its
 * warnings and hints are printed, so a reader of the test output sees them too.
 */
export async function asyncApiErrors(doc: unknown): Promise<string[]> {
  const diagnostics = await new Parser().validate(JSON.stringify(doc));
  for (const d of diagnostics.filter((x) => x.severity > 0)) console.log(`asyncapi ${['error', 'warning', 'info', 'hint'][d.severity]}: ${d.code} at ${d.path.join('.') || '(root)'}: ${d.message}`);
  return diagnostics.filter((d) => d.severity === 0).map((d) => `${d.code} at ${d.path.join('.')}: ${d.message}`);
}
