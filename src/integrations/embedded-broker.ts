import { Aedes } from 'aedes';
import { createServer, type AddressInfo, type Server } from 'node:net';

/**
 * An in-process MQTT broker (aedes) for the embedded default: the demo and a single-box trial run with no
 * broker to install. Production points `mqtt.url` at a real broker (mosquitto, EMQX, HiveMQ). aedes speaks
 * MQTT 3.1.1 only, so the driver uses protocol version 4 against it.
 */
export class EmbeddedBroker {
  private constructor(
    private readonly broker: Aedes,
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(port: number, host = '127.0.0.1'): Promise<EmbeddedBroker> {
    const broker = await Aedes.createBroker({ drainTimeout: 30_000 });
    // Nagle's algorithm off on every connection, as a deployment's broker is asked to (docs/DEPLOYMENT.md): otherwise a
    // reply waits for the client's delayed ACK of the broker's previous packet.
    const server = createServer((socket) => {
      socket.setNoDelay(true);
      broker.handle(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address() as AddressInfo;
    return new EmbeddedBroker(broker, server, `mqtt://${host}:${address.port}`);
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
