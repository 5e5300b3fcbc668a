/**
 * Timing shared with the Rust code (`src/timing.json`): the claim lease is the function's
 * timeout plus a margin, and must end before Lambda's first asynchronous retry, or the retry
 * of an event whose invocation died would find the dead holder's claim still live.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface Timing {
  readonly defaultTimeoutSeconds: number;
  readonly leaseMarginSeconds: number;
  readonly asyncFirstRetrySeconds: number;
  readonly sqsBatchingWindowSeconds: number;
}

export const TIMING_FILE = path.join(__dirname, '..', '..', 'src', 'timing.json');

export function readTiming(file: string = TIMING_FILE): Timing {
  const timing = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Timing>;
  for (const key of ['defaultTimeoutSeconds', 'leaseMarginSeconds', 'asyncFirstRetrySeconds', 'sqsBatchingWindowSeconds'] as const) {
    if (!Number.isInteger(timing[key]) || (timing[key] as number) <= 0) {
      throw new Error(`${file}: ${key} must be a positive whole number`);
    }
  }
  return timing as Timing;
}

export const TIMING = readTiming();

/** How long a claim holds for a function with this timeout. */
export function leaseSeconds(timeoutSeconds: number): number {
  return timeoutSeconds + TIMING.leaseMarginSeconds;
}

/** The longest timeout whose lease still ends before Lambda's first asynchronous retry. */
export const MAX_DIRECT_TIMEOUT_SECONDS = TIMING.asyncFirstRetrySeconds - TIMING.leaseMarginSeconds - 1;

/**
 * The queue's visibility timeout: a received message stays hidden while a batch can still be
 * waited for (the batching window), processed (the timeout) and its claims held (the lease),
 * and at least six times the timeout, as AWS advises for SQS event sources.
 */
export function visibilityTimeoutSeconds(timeoutSeconds: number): number {
  const covered = TIMING.sqsBatchingWindowSeconds + timeoutSeconds + leaseSeconds(timeoutSeconds);
  return Math.max(6 * timeoutSeconds, covered);
}
