/**
 * DataDog's documented sites, from the file the Rust configuration reads too
 * (`src/datadog_sites.json`), and the nearest one to a value that is not a site: an admin
 * copies the browser's address (`app.datadoghq.eu`), not the site parameter (`datadoghq.eu`).
 */
import * as fs from 'fs';
import * as path from 'path';

export interface DataDogSite {
  readonly site: string;
  readonly name: string;
  /** The host a browser shows for this site. */
  readonly browser: string;
}

export const DATADOG_SITES_FILE = path.join(__dirname, '..', '..', 'src', 'datadog_sites.json');

export function readDataDogSites(file: string = DATADOG_SITES_FILE): DataDogSite[] {
  const { sites } = JSON.parse(fs.readFileSync(file, 'utf8')) as { sites?: DataDogSite[] };
  if (!Array.isArray(sites) || sites.length === 0 || !sites.every((s) => typeof s.site === 'string' && typeof s.browser === 'string')) {
    throw new Error(`${file}: sites must be a non-empty list of {site, name, browser}`);
  }
  return sites;
}

export const DATADOG_SITES = readDataDogSites();

/**
 * The site meant by `value` when it is not a site itself: the host of a pasted address, less
 * `app.` or `api.`; else the site spelled most alike.
 */
export function nearestDataDogSite(value: string, sites: readonly DataDogSite[] = DATADOG_SITES): string {
  const host = value
    .trim()
    .toLowerCase()
    .replace(/^[a-z]+:\/\//, '')
    .replace(/[/?#].*$/, '')
    .replace(/:\d+$/, '')
    .replace(/\.$/, '');
  const bare = host.replace(/^(app|api)\./, '');
  const exact = sites.find((s) => s.site === bare || s.browser === host);
  if (exact) return exact.site;
  return sites
    .map((s) => ({ site: s.site, distance: editDistance(bare, s.site) }))
    .reduce((best, next) => (next.distance < best.distance ? next : best)).site;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}
