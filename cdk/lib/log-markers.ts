/**
 * Words of the function's log lines that the stack's metric filters count, from the file the
 * Rust tests check the log lines against (`src/log_markers.json`).
 */
import * as fs from 'fs';
import * as path from 'path';

export interface LogMarkers {
  /** A line carrying any of these: a push to DataDog failed. */
  readonly dataDogPushFailures: string[];
  /** A line carrying any of these: names cannot be fetched (ids stand in). */
  readonly namesUnavailable: string[];
  /** A line carrying any of these: DataDog may have taken a request it is sent again (counted twice). */
  readonly possiblyDoubled: string[];
}

export const LOG_MARKERS_FILE = path.join(__dirname, '..', '..', 'src', 'log_markers.json');

export function readLogMarkers(file: string = LOG_MARKERS_FILE): LogMarkers {
  const markers = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LogMarkers>;
  for (const key of ['dataDogPushFailures', 'namesUnavailable', 'possiblyDoubled'] as const) {
    const words = markers[key];
    if (!Array.isArray(words) || words.length === 0 || !words.every((word) => typeof word === 'string' && word !== '')) {
      throw new Error(`${file}: ${key} must be a non-empty list of words`);
    }
  }
  return markers as LogMarkers;
}

export const LOG_MARKERS = readLogMarkers();
