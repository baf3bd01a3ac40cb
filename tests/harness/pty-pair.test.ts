import { SerialPort } from 'serialport';
import { afterAll, describe, expect, it } from 'vitest';
import { removePtyDir, startPtyPair, type PtyPair } from './pty-pair.js';

let pair: PtyPair | undefined;
afterAll(async () => {
  if (pair) {
    await pair.stop();
    removePtyDir(pair);
  }
});

const open = (path: string) =>
  new Promise<SerialPort>((resolve, reject) => {
    const p = new SerialPort({ path, baudRate: 9600 }, (err) => (err ? reject(err) : resolve(p)));
  });

describe('pty pair harness', () => {
  it('bytes written at one end of a real pty pair arrive at the other through serialport', async () => {
    pair = await startPtyPair();
    const a = await open(pair.gatewayPath);
    const b = await open(pair.devicePath);
    const got = new Promise<Buffer>((resolve) => b.once('data', (d: Buffer) => resolve(d)));
    a.write(Buffer.from([0x7e, 0xa0, 0x07, 0x7e]));
    expect([...(await got)]).toEqual([0x7e, 0xa0, 0x07, 0x7e]);
    await new Promise<void>((r) => a.close(() => r()));
    await new Promise<void>((r) => b.close(() => r()));
  });
});
