/**
 * One conversation at a time on a serial bus (IEC 62056-46 is half-duplex master/slave: the client polls
 * one server and waits). A FIFO lock per port; `run` always releases, whatever the work does.
 */
export class BusLock {
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;

  /** Conversations waiting or running. */
  get depth(): number {
    return this.queued;
  }

  run<T>(work: () => Promise<T>): Promise<T> {
    this.queued++;
    const result = this.tail.then(work);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      this.queued--;
    });
    return result;
  }
}
