/**
 * The deterministic layout of a simulated fleet: which meter ids exist, which firmware profile and link
 * each has, and its region. The simulator and the gateway's fleet seeding both derive it from the same
 * spec, so they agree on every meter without sharing state.
 */
export interface FleetSpec {
  /** Number of meters. */
  count: number;
  /** Meter id prefix; ids are `${prefix}${n}` with n zero-padded to 6 digits, starting at 1. */
  prefix: string;
  /** Firmware profile ids, assigned round-robin. */
  profiles: readonly string[];
  /** Number of links (e.g. data concentrators); meters are spread over them in blocks. */
  links: number;
  /** Region names, assigned round-robin by link. */
  regions: readonly string[];
}

export interface PlannedMeter {
  meterId: string;
  profileId: string;
  link: string;
  region: string;
}

export function fleetMeterId(prefix: string, n: number): string {
  return `${prefix}${String(n).padStart(6, '0')}`;
}

export function planFleet(spec: FleetSpec): PlannedMeter[] {
  if (spec.profiles.length === 0) throw new Error('planFleet: at least one profile id is needed');
  const links = Math.max(1, spec.links);
  const regions = spec.regions.length > 0 ? spec.regions : ['default'];
  const perLink = Math.ceil(spec.count / links);
  const meters: PlannedMeter[] = [];
  for (let i = 0; i < spec.count; i++) {
    const linkIndex = Math.floor(i / perLink);
    meters.push({
      meterId: fleetMeterId(spec.prefix, i + 1),
      profileId: spec.profiles[i % spec.profiles.length]!,
      link: `mqtt-dc-${String(linkIndex + 1).padStart(3, '0')}`,
      region: regions[linkIndex % regions.length]!,
    });
  }
  return meters;
}
