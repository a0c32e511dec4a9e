import { sha256 } from '@noble/hashes/sha2';

/**
 * An incremental sha256 of one attempt's log, fed every chunk in offset order (so stdout and
 * stderr as they are interleaved in the log). The core's default is pure JavaScript
 * (@noble/hashes, runtime-neutral, about 200 MB/s); the Node entry passes node:crypto's
 * (native, about ten times faster), so hashing never holds a fast log back.
 */
export interface LogHasher {
  update(data: Uint8Array): void;
  /** Lowercase hex; called once, after the last update. */
  hex(): string;
}

export type LogHasherFactory = () => LogHasher;

export const portableLogHasher: LogHasherFactory = () => {
  const h = sha256.create();
  return {
    update: (data) => void h.update(data),
    hex: () => {
      let out = '';
      for (const b of h.digest()) out += b.toString(16).padStart(2, '0');
      return out;
    },
  };
};
