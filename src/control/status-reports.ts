import type { Logger } from 'pino';
import type { MeterDriver, RelayReading } from '../../drivers/driver.js';
import type { FirmwareProfile } from '../domain/firmware-profile.js';
import type { GatewayStore, ObservationSource } from '../store/store.js';
import type { ReadingRecord } from './switch-controller.js';

/**
 * Where a report came from: a DLMS push says so in the evidence the DLMS driver writes (`"source":"push"`,
 * drivers/dlms/push-listener.ts); everything else is a status report (the MQTT status topic, whose payload the meter
 * writes: never taken as a push, whatever it says).
 */
export function reportSource(protocol: MeterDriver['protocol'], evidence: string): ObservationSource {
  if (protocol !== 'dlms' || !evidence.startsWith('{')) return 'status';
  try {
    return (JSON.parse(evidence) as { source?: unknown }).source === 'push' ? 'push' : 'status';
  } catch {
    return 'status';
  }
}

/**
 * Unsolicited status reports (MQTT status topic, DLMS event push). A report is recorded as the meter's observed
 * state first, then handed on exactly like a reading the gateway took: abnormal consumption, prepayment credit
 * control and the time series must see a meter that only pushes as they see one that is read.
 */
export function listenToStatusReports(deps: {
  drivers: ReadonlyMap<string, MeterDriver>;
  store: GatewayStore;
  profiles: ReadonlyMap<string, FirmwareProfile>;
  logger: Logger;
  onReading?: ((reading: ReadingRecord) => void) | undefined;
}): void {
  const { store, logger } = deps;
  const onReport = async (meterId: string, reading: RelayReading, source: ObservationSource): Promise<void> => {
    await store.recordObservation(meterId, { relay: reading.relay, at: reading.at, source, voltageV: reading.voltageV, energyWh: reading.energyWh });
    if (!deps.onReading) return;
    const meter = await store.getMeter(meterId);
    const profile = meter ? deps.profiles.get(meter.profileId) : undefined;
    if (!meter || !profile) return; // not ours to judge: a meter not registered, or its profile not loaded
    deps.onReading({
      meterId,
      profileId: profile.id,
      protocol: profile.protocol,
      link: meter.link,
      region: meter.region,
      at: reading.at,
      relay: reading.relay,
      voltageV: reading.voltageV ?? null,
      energyWh: reading.energyWh ?? null,
      source: 'status_report',
      prepayment: meter.flags.prepaymentMode && meter.flags.prepaymentAgreementRef !== null,
    });
  };
  for (const driver of new Set(deps.drivers.values())) {
    driver.onStatusReport?.((meterId, reading, evidence) => {
      onReport(meterId, reading, reportSource(driver.protocol, evidence)).catch((err: unknown) => logger.error({ meterId, err }, 'could not record status report'));
    });
  }
}
