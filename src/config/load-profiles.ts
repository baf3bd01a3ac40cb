import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FirmwareProfileSchema, type FirmwareProfile } from '../domain/firmware-profile.js';

/** Read and validate every `*.json` profile in a directory. A bad file stops start-up naming the file and field. */
export function loadFirmwareProfiles(dir: string): Map<string, FirmwareProfile> {
  const profiles = new Map<string, FirmwareProfile>();
  const problems: string[] = [];
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch (e) {
    throw new Error(`firmware profiles: cannot read directory ${dir} (${(e as Error).message})`);
  }
  for (const file of files) {
    const path = join(dir, file);
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      problems.push(`${path}: not valid JSON (${(e as Error).message})`);
      continue;
    }
    const parsed = FirmwareProfileSchema.safeParse(raw);
    if (!parsed.success) {
      for (const i of parsed.error.issues) problems.push(`${path}: ${i.path.join('.') || '(top level)'}: ${i.message}`);
      continue;
    }
    if (profiles.has(parsed.data.id)) {
      problems.push(`${path}: profile id "${parsed.data.id}" is defined twice`);
      continue;
    }
    profiles.set(parsed.data.id, parsed.data);
  }
  if (problems.length > 0) throw new Error(`invalid firmware profiles:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  if (profiles.size === 0) throw new Error(`firmware profiles: no *.json profile in ${dir}`);
  return profiles;
}
