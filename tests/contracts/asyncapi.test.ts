import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildAsyncApiDocument, channelIds, messageId, RESPONSE_CHANNEL_ID } from '../../src/api/asyncapi-document.js';
import { MQTT_CONTRACT_SEMANTICS } from '../../src/api/mqtt-contract-semantics.js';
import { loadFirmwareProfiles } from '../../src/config/load-profiles.js';
import type { MqttFirmwareProfile } from '../../src/domain/firmware-profile.js';
import { asyncApiErrors } from './asyncapi-validate.js';
import { SHIPPED_ASYNCAPI, shippedAsyncApiIsCurrent } from './generate-asyncapi.js';

/**
 * The MQTT contract as meter makers read it (issue 18 item 2): the AsyncAPI document is valid for the AsyncAPI parser
 * from npm (what their tooling runs), the shipped copy is current, it describes every MQTT profile's topics and words,
 * and the README's contract table says the same fields. Real payloads are checked against it in
 * tests/e2e/asyncapi-wire.test.ts.
 */
const profiles = loadFirmwareProfiles(join(process.cwd(), 'firmware-profiles'));
const mqttProfiles = [...profiles.values()].filter((p): p is MqttFirmwareProfile => p.protocol === 'mqtt');
const shipped = JSON.parse(readFileSync(SHIPPED_ASYNCAPI, 'utf8'));
const served = buildAsyncApiDocument({ profiles: profiles.values(), broker: { url: 'mqtt://meter-user:secret@broker.example:1883', embedded: false }, instanceId: 'gw1' });

const propsOf = (doc: any, profileId: string, kind: 'command' | 'reply' | 'status'): string[] => Object.keys(doc.components.messages[messageId(profileId, kind)].payload.properties);

describe('the AsyncAPI document of the MQTT contract', () => {
  it('is valid AsyncAPI 3.0.0 for @asyncapi/parser, shipped and as a gateway serves it', async () => {
    expect(shipped.asyncapi).toBe('3.0.0');
    expect(await asyncApiErrors(shipped)).toEqual([]);
    expect(await asyncApiErrors(served)).toEqual([]);
  }, 60_000);

  it('the parser is no rubber stamp: an operation without its action is an error', async () => {
    const broken = structuredClone(shipped);
    delete broken.operations[`${Object.keys(broken.operations)[0]}`].action;
    expect((await asyncApiErrors(broken)).length).toBeGreaterThan(0);
  }, 60_000);

  it(`is shipped current in ${SHIPPED_ASYNCAPI} (if not: run npm run contracts)`, () => {
    expect(shippedAsyncApiIsCurrent(), `${SHIPPED_ASYNCAPI} is not what the firmware profiles make now: run npm run contracts and commit it`).toBe(true);
  });

  it("has every MQTT profile's command, reply and status channel at the profile's topics, with a {meterId} parameter", () => {
    expect(mqttProfiles.length).toBeGreaterThanOrEqual(2);
    for (const p of mqttProfiles) {
      const ids = channelIds(p.id);
      for (const [kind, topic] of [['command', p.mqtt.commandTopic], ['reply', p.mqtt.replyTopic], ['status', p.mqtt.statusTopic]] as const) {
        const channel = shipped.channels[ids[kind]];
        expect(channel?.address, `${p.id} ${kind}`).toBe(topic);
        expect(Object.keys(channel.parameters)).toEqual(['meterId']);
      }
    }
    // Only the profiles that honour the MQTT 5 Response Topic are answered on the gateway's own topic.
    const responders = mqttProfiles.filter((p) => p.mqtt.responseTopic).map((p) => p.id);
    expect(responders).toContain('acme-em340-fw2.4');
    expect(shipped.channels[RESPONSE_CHANNEL_ID].address).toBe('meterline/{instanceId}/reply/{meterId}');
    expect(Object.keys(shipped.channels[RESPONSE_CHANNEL_ID].messages)).toHaveLength(responders.length);
    const acmeCommand = shipped.components.messages[messageId('acme-em340-fw2.4', 'command')];
    expect(acmeCommand.bindings.mqtt).toMatchObject({ responseTopic: 'meterline/{instanceId}/reply/{meterId}', correlationData: { type: 'string' } });
    expect(shipped.components.messages[messageId('volta-pp20-fw1.7', 'command')].bindings).toBeUndefined();
  });

  it("says each profile's own words: the limit op where there is a limiter, its relay words, loadLimitW required in every reply of limiter firmware", () => {
    for (const p of mqttProfiles) {
      const command = shipped.components.messages[messageId(p.id, 'command')].payload;
      const reply = shipped.components.messages[messageId(p.id, 'reply')].payload;
      const status = shipped.components.messages[messageId(p.id, 'status')].payload;
      const words = [...new Set(Object.values(p.mqtt.relayValues))].sort();
      expect([...reply.properties.relay.enum].sort(), p.id).toEqual(words);
      expect([...status.properties.relay.enum].sort(), p.id).toEqual(words);
      if (p.mqtt.limitOp !== undefined) {
        expect(command.properties.op.enum).toContain(p.mqtt.limitOp);
        expect(command.properties.limitW.type).toEqual(['integer', 'null']);
        expect(reply.required).toContain('loadLimitW');
      } else {
        expect(command.properties.op.enum).toEqual(['disconnect', 'reconnect', 'read']);
        expect(command.properties.limitW).toBeUndefined();
        expect(reply.properties.loadLimitW).toBeUndefined();
      }
      expect(command.required).toEqual(['cid', 'op', 'ts', 'exp']);
    }
  });

  it("names a self-checking profile's load-side refusal words in the reply's reason", () => {
    const base = profiles.get('acme-em340-fw2.4') as MqttFirmwareProfile;
    const checking: MqttFirmwareProfile = { ...base, id: 'acme-em340-ls', mqtt: { ...base.mqtt, loadSideRefusalReasons: ['LOAD_SIDE_LIVE'] }, relay: { ...base.relay, loadSideVoltageCheck: { checkedBy: 'meter', maxVoltageV: 50 } } };
    const doc: any = buildAsyncApiDocument({ profiles: [checking] });
    expect(doc.components.messages[messageId('acme-em340-ls', 'reply')].payload.properties.reason.anyOf[0].enum).toEqual(['LOAD_SIDE_LIVE']);
  });

  it('sends from and receives at the gateway, QoS and retain false in the mqtt bindings, and says so', () => {
    for (const [id, op] of Object.entries<any>(shipped.operations)) {
      expect(op.description, id).toContain("From the gateway's point of view");
      expect(op.bindings.mqtt, id).toMatchObject({ retain: false, bindingVersion: '0.2.0' });
      expect([1, 2], id).toContain(op.bindings.mqtt.qos);
      expect(op.action, id).toBe(id.endsWith('sendCommand') ? 'send' : 'receive');
    }
    expect(shipped.operations['acme-em340-fw2_4-sendCommand'].bindings.mqtt.messageExpiryInterval).toBe(4);
  });

  it('carries the semantics the contract left unsaid', () => {
    for (const s of MQTT_CONTRACT_SEMANTICS) expect(shipped.info.description, s.key).toContain(s.text);
    expect(shipped.info.description).toContain('Unix epoch milliseconds');
    expect(shipped.info.description).toMatch(/dropped: the meter neither executes it nor answers it, not even with a nack/);
    expect(shipped.info.description).toContain('supply (line, network) side of the relay');
  });

  it("serves the configured broker without its credentials, and the instance's own Response Topic", () => {
    expect(served.servers).toEqual({ broker: expect.objectContaining({ host: 'broker.example:1883', protocol: 'mqtt', protocolVersion: '5' }) });
    expect(JSON.stringify(served)).not.toContain('secret');
    expect((served as any).channels[RESPONSE_CHANNEL_ID].parameters.instanceId).toMatchObject({ enum: ['gw1'] });
  });

  it('says when the gateway runs its embedded broker: MQTT 3.1.1, so no Response Topic and no message expiry', async () => {
    const embedded: any = buildAsyncApiDocument({ profiles: profiles.values(), broker: { url: 'mqtt://127.0.0.1:1883', embedded: true }, instanceId: 'gw1' });
    expect(embedded.servers.broker).toMatchObject({ host: '127.0.0.1:1883', protocol: 'mqtt', protocolVersion: '3.1.1' });
    expect(embedded.servers.broker.description).toContain('no Response Topic, no message expiry');
    expect(await asyncApiErrors(embedded)).toEqual([]);
  }, 60_000);
});

describe("the README's MQTT contract table", () => {
  const readme = readFileSync('README.md', 'utf8');
  const section = /## MQTT topic and payload contract\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? '';
  const rows = section.split('\n').filter((l) => /^\| (gateway|meter) →/.test(l)).map((l) => l.split(' | '));
  const kindOf = (topicCell: string): 'command' | 'reply' | 'status' => (topicCell.includes('mqtt.commandTopic') ? 'command' : topicCell.includes('mqtt.statusTopic') ? 'status' : 'reply');

  it('has a row for commands, replies and status reports', () => {
    expect(rows.map((r) => kindOf(r[1]!))).toEqual(['command', 'reply', 'status']);
  });

  it('names every payload field of the document, and the document every field it names', () => {
    for (const row of rows) {
      const kind = kindOf(row[1]!);
      const inTable = new Set([...row.slice(3).join(' | ').matchAll(/"(\w+)":/g)].map((m) => m[1]!));
      const inDoc = new Set(mqttProfiles.flatMap((p) => propsOf(shipped, p.id, kind)));
      expect([...inTable].sort(), kind).toEqual([...inDoc].sort());
    }
  });

  it('names every topic of the document by its profile field, and the document each topic the table names', () => {
    const tableTopics = new Set(rows.flatMap((r) => [...r[1]!.matchAll(/`(mqtt\.\w+Topic|meterline\/[^`]+)`/g)].map((m) => m[1]!.replace(/<(\w+)>/g, '{$1}'))));
    const docTopics = new Set<string>();
    for (const c of Object.values<any>(shipped.channels)) {
      const field = /Firmware profile field `(mqtt\.\w+Topic)`/.exec(c.description)?.[1];
      docTopics.add(field ?? c.address);
    }
    expect([...tableTopics].sort()).toEqual([...docTopics].sort());
  });

  it('states the semantics and points to the document', () => {
    const flat = section.replace(/\s+/g, ' ');
    for (const s of MQTT_CONTRACT_SEMANTICS) expect(flat, s.key).toContain(s.text);
    expect(section).toContain('/asyncapi.json');
    expect(section).toContain('docs/asyncapi.json');
  });
});
