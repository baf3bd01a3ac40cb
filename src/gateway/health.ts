import type { LinkHealth } from '../../drivers/driver.js';
import type { HealthCheck } from '../api/deps.js';
import type { SwitchController } from '../control/switch-controller.js';
import type { GatewayStore } from '../store/store.js';
import type { MeterLinks } from './meter-links.js';

/**
 * The health checks `/healthz` shows, each naming what it is about when it fails: the store (its file or server,
 * and why it takes no writes), the broker (its address, and the client's last error), the Modbus and DLMS links
 * (each one down, since when, and its last error), the control loop.
 */
export function gatewayHealth(store: GatewayStore, links: MeterLinks, controller: SwitchController): () => Record<string, HealthCheck> {
  return () => {
    const written = store.writeHealth();
    const checks: Record<string, HealthCheck> = {
      store: written.writable ? { ok: true } : { ok: false, detail: `${written.detail}; writes answer 503 E_STORE_UNAVAILABLE meanwhile` },
    };
    const mqtt = links.mqtt?.brokerState();
    if (!mqtt) checks.broker = { ok: false, detail: `MQTT broker ${links.brokerUrl}: not connected yet (the gateway is starting)` };
    else if (mqtt.connected) checks.broker = { ok: true };
    else {
      const since = mqtt.since > 0 ? ` since ${new Date(mqtt.since).toISOString()}` : '';
      checks.broker = { ok: false, detail: `MQTT broker ${mqtt.broker} not connected${since}: ${mqtt.lastError}; reconnecting, and orders wait for it without spending attempts` };
    }
    checks.links = linksCheck(links.linkHealth());
    checks.control = controller.loopRunning ? { ok: true } : { ok: false, detail: 'the control loop is not running (starting: verifying orders left in flight; or stopping)' };
    return checks;
  };
}

/**
 * The serial buses, TCP gateways and DLMS links that are down, each named with since when and its last error. The
 * broker connection is the `broker` check's (named there with its address), so it is not named twice.
 */
export function linksCheck(links: readonly LinkHealth[]): HealthCheck {
  const down = links.filter((l) => l.kind !== 'mqtt' && l.state === 'down');
  if (down.length === 0) return { ok: true };
  const named = down.map((l) => `${l.link} (${l.kind}) down since ${new Date(l.since).toISOString()}${l.lastError ? `: ${l.lastError.message}` : ''}`);
  return { ok: false, detail: `${down.length} link(s) down, their meters' orders wait without spending attempts: ${named.join('; ')}` };
}
