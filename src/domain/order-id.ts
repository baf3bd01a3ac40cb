import { randomBytes } from 'node:crypto';

/** Random bytes for order ids, drawn from the CSPRNG a pool at a time: one small randomBytes() call per id costs more than the rest of the id. */
const idPool = { bytes: Buffer.alloc(0), at: 0 };

/** Order ids sort by creation time and are unique across instances (48 random bits after the time). */
export function newOrderId(now: number): string {
  if (idPool.at + 6 > idPool.bytes.length) {
    idPool.bytes = randomBytes(6 * 1024);
    idPool.at = 0;
  }
  const tail = idPool.bytes.toString('hex', idPool.at, idPool.at + 6);
  idPool.at += 6;
  return `ord_${now.toString(36).padStart(9, '0')}${tail}`;
}
