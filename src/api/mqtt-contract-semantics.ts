/**
 * What the MQTT contract promises beyond the shape of its payloads (issue 18: the things the README left unsaid).
 * Each sentence is what the driver (drivers/mqtt/mqtt-driver.ts) and the simulated meter (simulators/meter-model.ts)
 * really do, and tests/e2e/asyncapi-wire.test.ts checks each on a real broker. They go into the AsyncAPI document's
 * description and, word for word, into the README's contract section.
 */
export interface ContractSemantic {
  /** A short key, stable for tests. */
  key: 'expiry' | 'time' | 'voltage' | 'status' | 'encoding' | 'retain';
  text: string;
}

export const MQTT_CONTRACT_SEMANTICS: readonly ContractSemantic[] = [
  {
    key: 'expiry',
    text:
      'An expired command (one that arrives after its `exp`) is dropped: the meter neither executes it nor answers it, not even with a nack. ' +
      'The gateway waits out its timeout, reads the relay back and retries with a new `cid`, `ts` and `exp`. ' +
      'Over MQTT 5 the command also carries a message-expiry interval (the timeout in whole seconds, rounded up), so a broker discards it undelivered.',
  },
  {
    key: 'time',
    text:
      '`ts` and `exp` are Unix epoch milliseconds (UTC), integers: `exp` is `ts` plus the profile\'s `timeouts.commandMs` (`timeouts.readMs` for a read). ' +
      'A meter judges `exp` by its own clock, so that clock must be synchronised to well within the timeout. ' +
      "A reply's or status report's `ts` is when the meter took the reading, in the same unit; without one the gateway uses the time the message arrived.",
  },
  {
    key: 'voltage',
    text:
      '`voltageV` is measured on the supply (line, network) side of the relay, so it shows the supply whatever the relay state: a closed relay with no voltage there is a supply fault, not a disconnection. ' +
      '`loadSideVoltageV` is measured on the load (customer) side: the supply\'s voltage while the relay is closed, 0 while it is open unless something feeds the customer\'s wiring (a bypass, a generator backfeed).',
  },
  {
    key: 'status',
    text:
      'No status report follows a remote switch: the reply answers it. Status reports are published only when the relay changes on its own (the customer presses the button of an armed relay, a local trip). ' +
      'The gateway records a report as observed state (source `status`) but never takes it as proof that a command worked: only the read-back (a `read` after the command) is.',
  },
  {
    key: 'encoding',
    text:
      'Payloads are JSON objects in UTF-8. Units: watts for `limitW` and `loadLimitW`, watt-hours for `energyWh` (the cumulative import register), volts for `voltageV` and `loadSideVoltageV`. ' +
      'A topic carries exactly one meter id, in one topic level (`{meterId}` never contains `/`, `+` or `#`). Fields not in the contract are ignored by the gateway.',
  },
  {
    key: 'retain',
    text:
      'Nothing is retained: commands, replies and status reports are published with retain false (a retained command would switch the meter again when it reconnects). ' +
      "Commands go at the profile's QoS (`mqtt.qos`, 1 in the shipped profiles); meters publish replies and status reports at QoS 1.",
  },
];
