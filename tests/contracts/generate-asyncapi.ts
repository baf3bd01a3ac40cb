import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildAsyncApiDocument } from '../../src/api/asyncapi-document.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import { projectRoot } from '../../src/config/project-root.js';

/**
 * The shipped MQTT contract, docs/asyncapi.json, built from the repository's firmware profiles (no broker, no
 * instance: those stay variables and parameters a deployment fills in). `npm run contracts` writes it;
 * tests/contracts/asyncapi.test.ts fails when it is not current.
 */
export const SHIPPED_ASYNCAPI = 'docs/asyncapi.json';

/** The shipped document's text as it should be now: the repository's profiles, two-space JSON, a final newline. */
export function shippedAsyncApiText(root: string = projectRoot()): string {
  const profiles = loadFirmwareProfiles(join(root, 'firmware-profiles'));
  return `${JSON.stringify(buildAsyncApiDocument({ profiles: profiles.values() }), null, 2)}\n`;
}

/** Whether docs/asyncapi.json is what the profiles make now. */
export function shippedAsyncApiIsCurrent(root: string = projectRoot()): boolean {
  try {
    return readFileSync(join(root, SHIPPED_ASYNCAPI), 'utf8') === shippedAsyncApiText(root);
  } catch {
    return false;
  }
}
