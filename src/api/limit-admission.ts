import { hasLoadLimiter } from '../domain/load-limiter.js';
import { MeterlineError } from '../errors.js';
import type { ApiDeps } from './deps.js';

/**
 * A limit can be verified only by reading it back from the meter's limiter (DOMAIN.md rule 10): a meter whose
 * firmware profile has none is refused before anything is stored (E_NO_LOAD_LIMITER, naming the profile). Unknown
 * meters are left to the store, which refuses them with E_METER_NOT_FOUND.
 */
export async function requireLoadLimiters(deps: Pick<ApiDeps, 'store' | 'profiles'>, meterIds: readonly string[]): Promise<void> {
  for (const meterId of new Set(meterIds)) {
    const meter = await deps.store.getMeter(meterId);
    if (!meter) continue;
    const profile = deps.profiles.get(meter.profileId);
    if (!profile || !hasLoadLimiter(profile)) {
      throw new MeterlineError('E_NO_LOAD_LIMITER', `meter ${meterId}'s firmware profile ${meter.profileId} has no load limiter, so a limit could never be verified by read-back; nothing was created`, {
        meterId,
        profileId: meter.profileId,
      });
    }
  }
}
