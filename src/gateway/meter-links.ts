import type { Logger } from 'pino';
import type { DlmsDriver, MeterKeyring } from '../../drivers/dlms/index.js';
import { MqttDriver } from '../../drivers/mqtt/mqtt-driver.js';
import type { LinkHealth, MeterDriver } from '../../drivers/driver.js';
import type { MqttFleet } from '../../simulators/mqtt-fleet.js';
import type { PlannedMeter } from '../../simulators/fleet-plan.js';
import type { GatewayConfig } from '../config/config-schema.js';
import { asMqttProfile, type FirmwareProfile, type MqttFirmwareProfile } from '../domain/firmware-profile.js';
import { bindError } from './bind-error.js';
import type { DlmsPushWiring, PushKeyring } from './dlms-push.js';
import type { StopList } from './stop-list.js';

/**
 * The DLMS driver's class once a gateway in this process has loaded the DLMS stack, else undefined (then no driver is
 * one). The serial and TCP protocol stacks (DLMS, Modbus with serialport), the embedded broker (aedes) and the
 * in-process simulated fleet are loaded when configured, not at start (issue 19: the main thread's fixed heap, ~5 MiB
 * for these with MQTT links only).
 */
export let loadedDlmsDriver: typeof DlmsDriver | undefined;

/** Every link of every driver (broker connection, RTU bus, TCP gateway, DLMS port or TCP link), ordered by name. */
export function allLinkHealth(drivers: ReadonlyMap<string, MeterDriver>): LinkHealth[] {
  return [...drivers.values()].flatMap((d) => d.linkHealth?.() ?? []).sort((a, b) => a.link.localeCompare(b.link));
}

/** Which simulated meters start off supply: every k-th, so the demo has customers to reconnect. */
function startsDisconnected(index: number, share: number): boolean {
  if (share <= 0) return false;
  return index % Math.max(1, Math.round(1 / share)) === 0;
}

/**
 * The gateway's side of the wire: the broker (embedded, or a real one's address), the demo's in-process simulated
 * fleet, and one driver per protocol. Built empty; `start()` connects them, after the gateway owns its store and
 * its port, so that a start that fails has sent nothing. The drivers map is shared with the control loop, which
 * looks a driver up only when it has an order to send.
 */
export class MeterLinks {
  readonly drivers = new Map<string, MeterDriver>();
  mqtt: MqttDriver | undefined;
  fleet: MqttFleet | undefined;
  brokerUrl: string;

  constructor(
    private readonly config: GatewayConfig,
    private readonly profiles: ReadonlyMap<string, FirmwareProfile>,
    private readonly planned: readonly PlannedMeter[],
    private readonly logger: Logger,
    /** Per-meter DLMS keys and invocation counters (HLS-GMAC profiles), from the store. */
    private readonly keyring?: MeterKeyring,
    /** Who pushed a notification, and its keys (dlms-push.ts); without it the listener delivers nothing. */
    private readonly push?: { keyring: PushKeyring; store: DlmsPushWiring['store'] },
  ) {
    this.brokerUrl = config.mqtt.url;
  }

  /** GET /v1/links, /metrics and /healthz: every link the drivers keep, with its state and counters. */
  linkHealth(): LinkHealth[] {
    return allLinkHealth(this.drivers);
  }

  /** Start the broker link (never failing for want of the broker: the link is then down and orders wait), the fleet and the drivers. */
  async start(stops: StopList): Promise<void> {
    const { config, profiles, logger } = this;
    const withFleet = config.simulator.inProcess && this.planned.length > 0;
    // mqtt-packet's number cache is process-wide and goes off with the first client made with `writeCache: false` (the
    // fleet's or the driver's): loaded before the broker listens, so that nothing waits between the broker listening and
    // that client being made, and the broker writes no packet (a CONNACK to a client from outside) with the cache on.
    const { MqttFleet } = withFleet ? await import('../../simulators/mqtt-fleet.js') : { MqttFleet: undefined };
    if (config.mqtt.mode === 'embedded') {
      const { EmbeddedBroker } = await import('../integrations/embedded-broker.js');
      const broker = await EmbeddedBroker.start(config.mqtt.embeddedPort).catch((err: unknown) => {
        throw bindError(err, `mqtt.embeddedPort ${config.mqtt.embeddedPort} (the embedded broker)`, 'METERLINE__MQTT__EMBEDDEDPORT');
      });
      stops.add(() => broker.stop());
      this.brokerUrl = broker.url;
    }
    // aedes (embedded) speaks MQTT 3.1.1; real brokers get MQTT 5 (message expiry, shared subscriptions).
    const protocolVersion = config.mqtt.mode === 'embedded' ? 4 : 5;

    if (MqttFleet) {
      const share = config.simulator.disconnectedShare;
      const autoPress = config.simulator.autoPressMs;
      const fleet = new MqttFleet({
        brokerUrl: this.brokerUrl,
        protocolVersion,
        connections: protocolVersion === 5 ? 4 : 1,
        writeCache: false,
        logger: logger.child({ component: 'simulator' }),
        meters: this.planned.map((m, i) => ({
          meterId: m.meterId,
          profile: asMqttProfile(profiles.get(m.profileId)!),
          initialRelay: startsDisconnected(i, share) ? 'disconnected' : 'connected',
          ...(autoPress !== null ? { faults: { autoPressAfterMs: autoPress } } : {}),
        })),
      });
      await fleet.start();
      stops.add(() => fleet.stop());
      this.fleet = fleet;
    }

    const mqttProfiles = [...profiles.values()].filter((p): p is MqttFirmwareProfile => p.protocol === 'mqtt');
    const mqtt = new MqttDriver({
      brokerUrl: this.brokerUrl,
      protocolVersion,
      instanceId: config.instanceId,
      profiles: mqttProfiles,
      maxInFlight: config.mqtt.maxInFlight,
      sharedGroup: config.mqtt.mode === 'external' ? config.mqtt.sharedGroup : null,
      keepaliveSec: config.mqtt.keepaliveSec,
      logger: logger.child({ component: 'mqtt-driver' }),
    });
    this.mqtt = mqtt;
    await mqtt.start();
    stops.add(() => mqtt.stop());
    this.drivers.set('mqtt', mqtt);
    // Serial and TCP protocols run only where links are configured (a DLMS profile with a password needs it then).
    if (Object.keys(config.modbus.rtu).length + Object.keys(config.modbus.tcp).length > 0) {
      const { createModbusDriver } = await import('../../drivers/modbus/index.js');
      const modbus = createModbusDriver({ links: config.modbus, profiles: [...profiles.values()], logger: logger.child({ component: 'modbus-driver' }) });
      await modbus.start();
      stops.add(() => modbus.stop());
      this.drivers.set('modbus', modbus);
    }
    if (Object.keys(config.dlms.ports).length + Object.keys(config.dlms.tcp ?? {}).length > 0 || config.dlms.push) {
      const { createDlmsDriver, DlmsDriver: dlmsDriverClass } = await import('../../drivers/dlms/index.js');
      loadedDlmsDriver = dlmsDriverClass;
      const push = config.dlms.push && this.push ? (await import('./dlms-push.js')).dlmsPushHooks({ ...this.push, links: config.dlms, profiles, logger }) : undefined;
      const dlms = createDlmsDriver({
        links: config.dlms,
        profiles: profiles.values(),
        logger: logger.child({ component: 'dlms-driver' }),
        ...(this.keyring ? { keyring: this.keyring } : {}),
        ...(push ? { push: { meterFor: push.meterFor, decipher: push.decipher } } : {}),
      });
      await dlms.start();
      stops.add(() => dlms.stop());
      this.drivers.set('dlms', dlms);
    }
  }
}
