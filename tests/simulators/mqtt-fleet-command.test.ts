import { describe, expect, it } from 'vitest';
import { parseCommand } from '../../simulators/mqtt-fleet.js';

// What a simulated MQTT meter takes as a command (the AsyncAPI contract's command message): the fields it reads,
// checked by hand rather than by a schema parse per message.
describe('simulated MQTT meter: command payload', () => {
  it('takes a command as the gateway sends it, and a limit command with a limit or null', () => {
    expect(parseCommand({ cid: 'c1', op: 'reconnect', orderId: 'ord_1', ts: 1000, exp: 5000 })).toEqual({ cid: 'c1', op: 'reconnect', orderId: 'ord_1', ts: 1000, exp: 5000 });
    expect(parseCommand({ cid: 'c2', op: 'read' })).toEqual({ cid: 'c2', op: 'read' });
    expect(parseCommand({ cid: 'c3', op: 'setLimit', limitW: 3000 })).toEqual({ cid: 'c3', op: 'setLimit', limitW: 3000 });
    expect(parseCommand({ cid: 'c4', op: 'setLimit', limitW: null })).toEqual({ cid: 'c4', op: 'setLimit', limitW: null });
  });

  it('ignores fields it does not read', () => {
    expect(parseCommand({ cid: 'c1', op: 'read', extra: { deep: true } })).toEqual({ cid: 'c1', op: 'read' });
  });

  it.each([
    ['not an object', 'reconnect', /not a JSON object/],
    ['null', null, /not a JSON object/],
    ['an array', [1], /not a JSON object/],
    ['no cid', { op: 'read' }, /^cid:/],
    ['an empty cid', { cid: '', op: 'read' }, /^cid:/],
    ['a numeric op', { cid: 'c', op: 7 }, /^op:/],
    ['an empty op', { cid: 'c', op: '' }, /^op:/],
    ['a zero limit', { cid: 'c', op: 'setLimit', limitW: 0 }, /^limitW:/],
    ['a fractional limit', { cid: 'c', op: 'setLimit', limitW: 1.5 }, /^limitW:/],
    ['a limit as text', { cid: 'c', op: 'setLimit', limitW: '100' }, /^limitW:/],
    ['a numeric orderId', { cid: 'c', op: 'read', orderId: 5 }, /^orderId:/],
    ['a textual expiry', { cid: 'c', op: 'read', exp: '5000' }, /^exp:/],
    ['a textual ts', { cid: 'c', op: 'read', ts: 'now' }, /^ts:/],
  ])('refuses %s, saying why', (_what, body, why) => {
    const out = parseCommand(body);
    expect(typeof out).toBe('string');
    expect(out).toMatch(why);
  });
});
