import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { batchWrites } from '../../drivers/mqtt/write-batch.js';

/** A TCP server that keeps every byte it receives, and a client socket connected to it. */
async function pair(): Promise<{ client: Socket; received: () => Buffer; closed: Promise<void>; chunks: () => number; server: Server }> {
  const parts: Buffer[] = [];
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const server = createServer((s) => {
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('end', () => {
      s.end();
      resolveClosed();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const client = connect(port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', r));
  return { client, received: () => Buffer.concat(parts), closed, chunks: () => parts.length, server };
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

describe('batchWrites: the bytes written in one turn go out together, unchanged and in order', () => {
  it('buffers and strings written in one turn arrive intact and in order', async () => {
    const { client, received, closed, server } = await pair();
    servers.push(server);
    batchWrites(client);
    batchWrites(client); // a second call changes nothing
    expect(client.write(Buffer.from([0x30, 0x05]))).toBe(true);
    client.write('ab', 'utf8');
    client.write(Buffer.from('cde'));
    // The next turn's writes come after this turn's.
    await new Promise((r) => setImmediate(r));
    client.write('é');
    client.write(Buffer.from([0x00]));
    client.end();
    await closed;
    expect(received()).toEqual(Buffer.concat([Buffer.from([0x30, 0x05]), Buffer.from('abcde'), Buffer.from('é'), Buffer.from([0x00])]));
  });

  it('end() sends what was gathered before closing, and a write with a callback comes after what was gathered', async () => {
    const { client, received, closed, server } = await pair();
    servers.push(server);
    batchWrites(client);
    client.write('one;');
    const called = new Promise<void>((r) => client.write('two;', 'utf8', () => r()));
    client.write('three;');
    client.end('four;');
    await called;
    await closed;
    expect(received().toString()).toBe('one;two;three;four;');
  });

  it('bytes written to a socket destroyed in the same turn are dropped, as the socket drops them, without an error', async () => {
    const { client, server } = await pair();
    servers.push(server);
    batchWrites(client);
    const errors: unknown[] = [];
    client.on('error', (e) => errors.push(e));
    client.write('lost');
    client.destroy();
    await new Promise((r) => setTimeout(r, 20));
    expect(errors).toEqual([]);
    expect(client.destroyed).toBe(true);
  });

  it("turns Nagle's algorithm off: a turn's bytes do not wait for the peer to acknowledge the previous turn's", async () => {
    const { client, server } = await pair();
    servers.push(server);
    const noDelay = vi.spyOn(client, 'setNoDelay');
    batchWrites(client);
    expect(noDelay).toHaveBeenCalledWith(true);
    client.destroy();
  });
});
