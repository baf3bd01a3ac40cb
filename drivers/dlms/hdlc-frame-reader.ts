import { FLAG, frameLengthAt } from './hdlc-frame.js';

/**
 * Cuts a serial byte stream into HDLC frames (IEC 62056-46 §6.4.1): a frame starts at a flag, its format
 * field gives its length, and it must end with a flag. The closing flag may also open the next frame.
 * Bytes that cannot be a frame are reported as noise (evidence for a garbled answer), never silently lost.
 *
 * @example
 *   const reader = new HdlcFrameReader();
 *   for (const item of reader.push(chunk)) if (item.kind === 'frame') handle(item.bytes);
 */

export type ReaderItem = { kind: 'frame'; bytes: Uint8Array } | { kind: 'noise'; bytes: Uint8Array };

/** No legal frame is shorter than flag + format (2) + 2 addresses + control + FCS (2) + flag. */
const MIN_FRAME_LENGTH = 7;

export class HdlcFrameReader {
  private buf: Uint8Array = new Uint8Array(0);

  /** Bytes held back waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): ReaderItem[] {
    const joined = new Uint8Array(this.buf.length + chunk.length);
    joined.set(this.buf, 0);
    joined.set(chunk, this.buf.length);
    const out: ReaderItem[] = [];
    let i = 0;
    let noiseFrom = -1;
    const flushNoise = (upTo: number) => {
      if (noiseFrom >= 0 && upTo > noiseFrom) out.push({ kind: 'noise', bytes: joined.slice(noiseFrom, upTo) });
      noiseFrom = -1;
    };
    while (i < joined.length) {
      if (joined[i] !== FLAG) {
        if (noiseFrom < 0) noiseFrom = i;
        i++;
        continue;
      }
      if (i + 2 >= joined.length) break; // need the format field
      const length = frameLengthAt(joined, i + 1);
      if (length === undefined || length < MIN_FRAME_LENGTH) {
        // A flag followed by something other than a frame: an idle flag, or the closing flag of the last frame.
        if (joined[i + 1] !== FLAG) {
          if (noiseFrom < 0) noiseFrom = i;
        } else flushNoise(i);
        i++;
        continue;
      }
      const end = i + length + 1; // index of the closing flag
      if (end >= joined.length) break; // wait for the rest
      if (joined[end] !== FLAG) {
        if (noiseFrom < 0) noiseFrom = i;
        i++;
        continue;
      }
      flushNoise(i);
      out.push({ kind: 'frame', bytes: joined.slice(i, end + 1) });
      i = end; // the closing flag may open the next frame
      if (i + 1 === joined.length) i++; // a trailing flag alone: nothing more to wait for
    }
    if (noiseFrom >= 0 && i >= joined.length) flushNoise(joined.length);
    this.buf = joined.slice(noiseFrom >= 0 ? noiseFrom : i);
    return out;
  }

  /** Drop a partial frame (after the inter-frame time-out or before a new conversation); returns what was dropped. */
  reset(): Uint8Array {
    const dropped = this.buf;
    this.buf = new Uint8Array(0);
    return dropped;
  }
}
