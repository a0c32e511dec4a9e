import { createHash } from 'node:crypto';
import type { LogHasherFactory } from '../core/log-hasher';

/** node:crypto's sha256 for the log digest: native, so a log at hundreds of MB/s is not slowed by hashing it. */
export const nodeLogHasher: LogHasherFactory = () => {
  const h = createHash('sha256');
  return { update: (data) => void h.update(data), hex: () => h.digest('hex') };
};
