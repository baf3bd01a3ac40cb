import type { FirmwareProfile, MqttFirmwareProfile } from '../domain/firmware-profile.js';
import { MQTT_CONTRACT_SEMANTICS } from './mqtt-contract-semantics.js';

/**
 * The MQTT contract as an AsyncAPI 3.0.0 document (issue 18 item 2), built from the loaded MQTT firmware profiles: per
 * profile a command, a reply and a status channel, the operations seen from the gateway's side, the payloads as JSON
 * Schema (draft-07 keywords only, so any JSON Schema validator checks a real payload against them) and the semantics in
 * `mqtt-contract-semantics.ts`. Served at GET /asyncapi.json and shipped as docs/asyncapi.json (npm run contracts).
 * Plain objects only: the gateway needs no AsyncAPI library at run time.
 */

export const ASYNCAPI_MQTT_BINDING = '0.2.0';

/** The gateway's own reply topic (MQTT 5 Response Topic), as the driver names it. */
export const RESPONSE_TOPIC_TEMPLATE = 'meterline/{instanceId}/reply/{meterId}';

export interface AsyncApiOptions {
  /** Every loaded profile; only the MQTT ones go into the document. */
  profiles: Iterable<FirmwareProfile>;
  /** The broker the gateway uses (credentials are dropped). Absent: a server with `host` and `port` variables. */
  broker?: { url: string; embedded: boolean };
  /** The running gateway's instance id (the Response Topic's `{instanceId}`). Absent: left a parameter. */
  instanceId?: string;
}

type Json = Record<string, unknown>;

/** Channel and operation keys allow letters, digits, `_` and `-` only; profile ids may also hold dots. */
export function profileKey(profileId: string): string {
  return profileId.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** The channel ids the document gives a profile's topics. */
export function channelIds(profileId: string): { command: string; reply: string; status: string } {
  const k = profileKey(profileId);
  return { command: `${k}-command`, reply: `${k}-reply`, status: `${k}-status` };
}

export const RESPONSE_CHANNEL_ID = 'gateway-response-topic';

/** Component message keys: `<profile id>.command|reply|status`. */
export function messageId(profileId: string, kind: 'command' | 'reply' | 'status'): string {
  return `${profileId}.${kind}`;
}

const ref = (path: string): Json => ({ $ref: path });
const meterIdParameter = { description: 'The meter id: one topic level, never containing `/`, `+` or `#`.' };
const opBinding = (qos: number, extra: Json = {}): Json => ({ mqtt: { qos, retain: false, ...extra, bindingVersion: ASYNCAPI_MQTT_BINDING } });
const epochMs = (what: string): Json => ({ type: 'integer', minimum: 0, description: `${what}, in Unix epoch milliseconds (UTC).`, examples: [1764054000000] });
const volts = (what: string): Json => ({ type: 'number', minimum: 0, description: what, examples: [230.4] });

/** The relay state in this firmware's words (`mqtt.relayValues`), `what` saying which moment it describes. */
function relayWords(p: MqttFirmwareProfile, what: string): Json {
  const v = p.mqtt.relayValues;
  return {
    type: 'string',
    enum: [...new Set([v.connected, v.disconnected, v.armed])],
    description: `${what}, in this firmware's words: "${v.connected}" connected (closed), "${v.disconnected}" disconnected (open), "${v.armed}" armed (the customer's button closes it).`,
  };
}

function commandPayload(p: MqttFirmwareProfile): Json {
  const ops = ['disconnect', 'reconnect', 'read', ...(p.mqtt.limitOp !== undefined ? [p.mqtt.limitOp] : [])];
  const properties: Json = {
    cid: { type: 'string', minLength: 1, description: 'Correlation id, unique per attempt (`<orderId>:<attempt>:cmd|read|verify`): echo it in the reply.', examples: ['ord_01:1:cmd'] },
    op: { type: 'string', enum: ops, description: `What to do: disconnect, reconnect, read (changes nothing)${p.mqtt.limitOp !== undefined ? `, or "${p.mqtt.limitOp}" (set or remove the demand limit)` : ''}.` },
    orderId: { type: 'string', minLength: 1, description: 'The switch order this command serves (absent on a read not made for an order).' },
    ts: epochMs('When the gateway published the command'),
    exp: epochMs('After this the meter must not execute the command: it drops it without a reply'),
  };
  const schema: Json = { type: 'object', additionalProperties: false, required: ['cid', 'op', 'ts', 'exp'], properties };
  if (p.mqtt.limitOp !== undefined) {
    properties.limitW = { type: ['integer', 'null'], minimum: 1, description: 'For the limit op only: the demand limit in watts, or null to remove it.', examples: [1500, null] };
    schema.if = { properties: { op: { const: p.mqtt.limitOp } }, required: ['op'] };
    schema.then = { required: ['limitW'] };
    schema.else = { not: { required: ['limitW'] } };
  }
  return schema;
}

function replyPayload(p: MqttFirmwareProfile): Json {
  const refusals = p.mqtt.loadSideRefusalReasons;
  const reason: Json =
    refusals === undefined
      ? { type: 'string', minLength: 1, description: 'Why a nack refused the command (free text); the relay did not move.' }
      : {
          type: 'string',
          minLength: 1,
          anyOf: [
            { enum: refusals, description: 'This firmware refusing to close onto voltage on its load side: `load_side_voltage`, never retried.' },
            { description: 'Any other refusal (free text): a nack, retried.' },
          ],
          description: 'Why a nack refused the command; the relay did not move.',
        };
  const properties: Json = {
    cid: { type: 'string', minLength: 1, description: "The command's `cid`, echoed." },
    result: { type: 'string', enum: ['ok', 'nack'], description: '`ok`: done (a claim; the gateway verifies by read-back). `nack`: refused, the relay did not move.' },
    relay: relayWords(p, 'The relay state after the op'),
    voltageV: volts('Voltage on the supply (line) side of the relay, in volts: present whatever the relay state.'),
    energyWh: { type: 'number', minimum: 0, description: 'Cumulative imported energy register, in watt-hours.', examples: [1234567] },
    loadSideVoltageV: volts('Voltage on the load (customer) side of the relay, in volts: 0 while open unless backfed. Optional.'),
    ts: epochMs('When the meter took the reading'),
    reason,
  };
  const required = ['cid', 'result', 'relay'];
  if (p.mqtt.limitOp !== undefined) {
    properties.loadLimitW = { type: ['integer', 'null'], minimum: 1, description: 'The demand limit in force after the op, in watts; null: none. In every reply of this firmware (it has a limiter).', examples: [1500, null] };
    required.push('loadLimitW');
  }
  return { type: 'object', additionalProperties: false, required, properties };
}

function statusPayload(p: MqttFirmwareProfile): Json {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['relay'],
    properties: {
      relay: relayWords(p, 'The relay state after a change the meter made on its own'),
      voltageV: volts('Voltage on the supply (line) side of the relay, in volts.'),
      energyWh: { type: 'number', minimum: 0, description: 'Cumulative imported energy register, in watt-hours.', examples: [1234567] },
      ts: epochMs('When the relay changed'),
    },
  };
}

/** The server: the configured broker (credentials dropped), or variables for a deployment to fill in. */
function server(broker: AsyncApiOptions['broker']): Json {
  const description = 'The MQTT broker the gateway and the meters share: the embedded broker (demo and tests, MQTT 3.1.1) or the configured `mqtt.url` (MQTT 5).';
  if (broker === undefined) {
    return {
      host: '{host}:{port}',
      protocol: 'mqtt',
      description,
      variables: { host: { default: '127.0.0.1', description: 'The broker host (config `mqtt.url`).' }, port: { default: '1883' } },
    };
  }
  const u = new URL(broker.url);
  const protocol = u.protocol.replace(':', '') === 'tcp' ? 'mqtt' : u.protocol.replace(':', '');
  const out: Json = {
    host: u.host,
    protocol,
    protocolVersion: broker.embedded ? '3.1.1' : '5',
    description: broker.embedded ? 'The embedded broker of this gateway (MQTT 3.1.1: no Response Topic, no message expiry).' : description,
  };
  if (u.pathname !== '' && u.pathname !== '/') out.pathname = u.pathname;
  return out;
}

export function buildAsyncApiDocument(options: AsyncApiOptions): Json {
  const profiles = [...options.profiles].filter((p): p is MqttFirmwareProfile => p.protocol === 'mqtt').sort((a, b) => a.id.localeCompare(b.id));
  const channels: Json = {};
  const operations: Json = {};
  const messages: Json = {};
  const responders = profiles.filter((p) => p.mqtt.responseTopic);
  const instanceParameter = options.instanceId === undefined
    ? { description: 'The gateway instance id (config `instanceId`).' }
    : { description: 'The gateway instance id (config `instanceId`).', enum: [options.instanceId], default: options.instanceId };

  for (const p of profiles) {
    const ids = channelIds(p.id);
    const label = `${p.manufacturer} ${p.model}, firmware ${p.firmware} (profile \`${p.id}\`)`;
    const msgRef = (kind: 'command' | 'reply' | 'status') => ref(`#/components/messages/${messageId(p.id, kind)}`);
    const commandBindings: Json = {};
    if (p.mqtt.responseTopic) {
      commandBindings.mqtt = {
        responseTopic: RESPONSE_TOPIC_TEMPLATE.replace('{instanceId}', options.instanceId ?? '{instanceId}'),
        correlationData: { type: 'string', description: 'The `cid` as UTF-8 bytes; echo it in the reply (the gateway matches replies by the payload `cid`).' },
        bindingVersion: ASYNCAPI_MQTT_BINDING,
      };
    }
    messages[messageId(p.id, 'command')] = {
      name: 'command',
      title: `Command to one ${p.model}`,
      summary: 'A relay command, a read, or a demand-limit command, from the gateway to one meter.',
      payload: commandPayload(p),
      correlationId: { location: '$message.payload#/cid' },
      ...(Object.keys(commandBindings).length > 0 ? { bindings: commandBindings } : {}),
    };
    messages[messageId(p.id, 'reply')] = {
      name: 'reply',
      title: `Reply from one ${p.model}`,
      summary: 'The answer to one command, with the relay state after it.',
      payload: replyPayload(p),
      correlationId: { location: '$message.payload#/cid' },
    };
    messages[messageId(p.id, 'status')] = {
      name: 'status',
      title: `Status report from one ${p.model}`,
      summary: 'Published when the relay changes on its own (button press, local trip); never after a remote switch.',
      payload: statusPayload(p),
    };

    channels[ids.command] = {
      address: p.mqtt.commandTopic,
      title: `${p.id} commands`,
      description: `Commands to one ${label}. Firmware profile field \`mqtt.commandTopic\`.`,
      parameters: { meterId: meterIdParameter },
      messages: { command: msgRef('command') },
    };
    channels[ids.reply] = {
      address: p.mqtt.replyTopic,
      title: `${p.id} replies`,
      description: `Replies of one ${label}${p.mqtt.responseTopic ? ' when the command carried no MQTT 5 Response Topic (MQTT 3.1.1, or firmware that ignores it)' : ''}. Firmware profile field \`mqtt.replyTopic\`.`,
      parameters: { meterId: meterIdParameter },
      messages: { reply: msgRef('reply') },
    };
    channels[ids.status] = {
      address: p.mqtt.statusTopic,
      title: `${p.id} status reports`,
      description: `Status reports of one ${label}. Firmware profile field \`mqtt.statusTopic\`. The gateway takes them through a shared subscription (\`$share/<mqtt.sharedGroup>/...\`) so each is recorded once.`,
      parameters: { meterId: meterIdParameter },
      messages: { status: msgRef('status') },
    };

    const k = profileKey(p.id);
    const replyTo = p.mqtt.responseTopic
      ? {
          address: { location: '$message.header#/responseTopic', description: 'The MQTT 5 Response Topic property of the command; MQTT 3.1.1 firmware answers on the reply channel.' },
          channel: ref(`#/channels/${RESPONSE_CHANNEL_ID}`),
          messages: [ref(`#/channels/${RESPONSE_CHANNEL_ID}/messages/${k}-reply`)],
        }
      : { channel: ref(`#/channels/${ids.reply}`), messages: [ref(`#/channels/${ids.reply}/messages/reply`)] };
    operations[`${k}-sendCommand`] = {
      action: 'send',
      channel: ref(`#/channels/${ids.command}`),
      title: `Send a command to one ${p.model}`,
      summary: 'The gateway sends (publishes) this.',
      description: `From the gateway's point of view: the gateway sends a command to one meter and waits \`timeouts.commandMs\` (${p.timeouts.commandMs} ms; reads ${p.timeouts.readMs} ms) for the reply. ${p.mqtt.responseTopic ? `Over MQTT 5 it names its own reply topic \`${RESPONSE_TOPIC_TEMPLATE}\` as the Response Topic, with the \`cid\` as Correlation Data.` : 'The meter replies on its reply topic.'}`,
      messages: [ref(`#/channels/${ids.command}/messages/command`)],
      bindings: opBinding(p.mqtt.qos, { messageExpiryInterval: Math.max(1, Math.ceil(Math.max(p.timeouts.commandMs, p.timeouts.readMs) / 1000)) }),
      reply: replyTo,
    };
    operations[`${k}-receiveReply`] = {
      action: 'receive',
      channel: ref(`#/channels/${ids.reply}`),
      title: `Receive the replies of ${p.id} meters`,
      summary: 'The gateway receives (subscribes to) this.',
      description: "From the gateway's point of view: the gateway receives the meter's replies; every gateway instance subscribes and takes only the `cid`s it sent.",
      messages: [ref(`#/channels/${ids.reply}/messages/reply`)],
      bindings: opBinding(1),
    };
    operations[`${k}-receiveStatus`] = {
      action: 'receive',
      channel: ref(`#/channels/${ids.status}`),
      title: `Receive the status reports of ${p.id} meters`,
      summary: 'The gateway receives (subscribes to) this.',
      description: "From the gateway's point of view: the gateway receives status reports and records them as observed state (source `status`), never as a command's proof.",
      messages: [ref(`#/channels/${ids.status}/messages/status`)],
      bindings: opBinding(1),
    };
  }

  if (responders.length > 0) {
    channels[RESPONSE_CHANNEL_ID] = {
      address: RESPONSE_TOPIC_TEMPLATE,
      title: "The gateway instance's own reply topic",
      description:
        'The MQTT 5 Response Topic each gateway instance names in its commands, for firmware with `mqtt.responseTopic: true`: the reply reaches the instance that asked and no other. Echo the Correlation Data.',
      parameters: { instanceId: instanceParameter, meterId: meterIdParameter },
      messages: Object.fromEntries(responders.map((p) => [`${profileKey(p.id)}-reply`, ref(`#/components/messages/${messageId(p.id, 'reply')}`)])),
    };
    operations['gateway-receiveResponse'] = {
      action: 'receive',
      channel: ref(`#/channels/${RESPONSE_CHANNEL_ID}`),
      title: 'Receive replies on the Response Topic',
      summary: 'The gateway receives (subscribes to) this.',
      description: "From the gateway's point of view: the gateway receives replies addressed to it by the Response Topic of its commands.",
      messages: responders.map((p) => ref(`#/channels/${RESPONSE_CHANNEL_ID}/messages/${profileKey(p.id)}-reply`)),
      bindings: opBinding(1),
    };
  }

  return {
    asyncapi: '3.0.0',
    id: 'urn:meterline:mqtt-meter-contract',
    info: {
      title: 'Meterline MQTT meter contract',
      version: '1',
      description: [
        'The topics and payloads by which Meterline commands MQTT meters and hears their replies and status reports, one set per firmware profile (`firmware-profiles/*.json`). Operations are seen from the gateway: **send** is what the gateway publishes, **receive** what it subscribes to.',
        '',
        ...MQTT_CONTRACT_SEMANTICS.map((s) => `- ${s.text}`),
      ].join('\n'),
    },
    defaultContentType: 'application/json',
    servers: { broker: server(options.broker) },
    channels,
    operations,
    components: { messages },
  };
}
