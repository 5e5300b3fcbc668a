import { MAX_DIRECT_TIMEOUT_SECONDS, TIMING } from './timing';

/**
 * The deployment's inputs: stored in `settings.json` beside the cdk app, so that `cdk deploy`
 * and `cdk destroy` with no flags reproduce the last deployment; `-c key=value` overrides a
 * stored value and is stored in turn. Each value is checked, with a message naming the key.
 */
import * as fs from 'fs';
import * as path from 'path';

/** The topics the rule forwards. Genesys keeps the literal `{id}` in `detail-type`. */
export const ATTRIBUTES_DETAIL_TYPE = 'v2.detail.events.conversation.{id}.attributes';
export const FLOW_OUTCOME_DETAIL_TYPE = 'v2.detail.events.conversation.{id}.flow.outcome';

/** Longest fixed name map kept in the function's environment (Lambda allows 4 KB in all). */
export const MAX_NAMES_JSON_BYTES = 2048;

export type Mode = 'direct' | 'queued';
export type Architecture = 'arm64' | 'x86_64';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface FlowMetricsSettings {
  /** The CloudFormation stack's name. */
  readonly stackName: string;
  /** `aws.partner/genesys.com/cloud/<org-id>/<integration-name>` */
  readonly eventSourceName: string;
  /** DataDog site, e.g. `datadoghq.com`, `datadoghq.eu`. */
  readonly datadogSite: string;
  /** An existing secret holding the API key; without it the stack creates one to fill. */
  readonly apiKeySecretArn?: string;
  /** Static DataDog tags, comma-separated `key:value`. */
  readonly tags?: string;
  readonly metricName: string;
  /** Ledger item TTL after the key's time, in days (above the 7-day stale age). */
  readonly retentionDays: number;
  readonly logLevel: LogLevel;
  readonly logRetentionDays: number;
  readonly architecture: Architecture;
  readonly mode: Mode;
  readonly memorySize: number;
  readonly timeoutSeconds: number;
  /** Direct mode: a cap on the function's concurrent executions. */
  readonly reservedConcurrency?: number;
  /** Queued mode: a cap on concurrent batches, set on the queue's event source (throttled
   * receives would count toward the dead-letter queue's receive limit under reserved
   * concurrency). */
  readonly maxConcurrency?: number;
  /** An address to notify of alarms (an SNS topic is created for it). */
  readonly alarmEmail?: string;
  /** The name of an event bus already associated with the partner event source (in the console
   * or by an earlier stack): the stack then creates no bus. */
  readonly existingBus?: string;
  /** Alarm when the rule matches no event for this many hours (Genesys stopped sending). */
  readonly noEventsAlarmHours: number;
  /** Also forward `….flow.outcome` events: flow milestones and outcomes. */
  readonly flowOutcomes: boolean;
  /** The org's region domain (e.g. `mypurecloud.ie`), to fetch flow, milestone and outcome names. */
  readonly genesysRegion?: string;
  /** An existing secret of `{"clientId", "clientSecret"}`: the org's OAuth client for names. */
  readonly genesysCredentialsSecretArn?: string;
  /** Fixed names, id → name, used ahead of the Genesys API. */
  readonly names?: Record<string, string>;
}

/** Every key the settings file may hold, in the order it is written. */
export const SETTING_KEYS = [
  'stackName',
  'eventSourceName',
  'existingBus',
  'datadogSite',
  'apiKeySecretArn',
  'tags',
  'metricName',
  'retentionDays',
  'logLevel',
  'logRetentionDays',
  'architecture',
  'mode',
  'memorySize',
  'timeoutSeconds',
  'reservedConcurrency',
  'maxConcurrency',
  'alarmEmail',
  'noEventsAlarmHours',
  'flowOutcomes',
  'genesysRegion',
  'genesysCredentialsSecretArn',
  'names',
] as const;

/** Where the settings are stored: beside the cdk app, one per checkout (not committed), or
 * where `FLOW_METRICS_SETTINGS` points (the test script's synths use a file of their own). */
export const SETTINGS_FILE = process.env.FLOW_METRICS_SETTINGS ?? path.join(__dirname, '..', 'settings.json');

/** The Rust code's stale age: retention must exceed it. */
export const MAX_KEY_AGE_DAYS = 7;

/** Log retentions CloudWatch accepts. */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

export class SettingsError extends Error {
  constructor(key: string, problem: string) {
    super(`setting ${key}: ${problem}`);
    this.name = 'SettingsError';
  }
}

/** Reads one context value (the app passes `node.tryGetContext`). */
export type Context = (key: string) => unknown;

export function readSettings(context: Context): FlowMetricsSettings {
  const text = (key: string): string | undefined => {
    const value = context(key);
    if (value === undefined || value === null || value === '') return undefined;
    return String(value).trim();
  };
  const integer = (key: string, fallback: number, min: number, max: number): number => {
    const raw = text(key);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new SettingsError(key, `${JSON.stringify(raw)} must be a whole number from ${min} to ${max}`);
    }
    return value;
  };
  const oneOf = <T extends string>(key: string, allowed: readonly T[], fallback: T): T => {
    const raw = text(key) ?? fallback;
    if (!(allowed as readonly string[]).includes(raw)) {
      throw new SettingsError(key, `${JSON.stringify(raw)} must be one of ${allowed.join(', ')}`);
    }
    return raw as T;
  };

  const eventSourceName = text('eventSourceName');
  if (eventSourceName === undefined) {
    throw new SettingsError(
      'eventSourceName',
      'is required: the partner event source of your Genesys Cloud EventBridge integration, ' +
        'aws.partner/genesys.com/cloud/<org-id>/<integration-name> (store it in cdk/settings.json, ' +
        'or give it once with -c eventSourceName=…)',
    );
  }
  if (!/^aws\.partner\/genesys\.com\/cloud\/[0-9a-fA-F-]{36}\/[A-Za-z0-9._-]+$/.test(eventSourceName)) {
    throw new SettingsError(
      'eventSourceName',
      `${JSON.stringify(eventSourceName)} is not a Genesys partner event source ` +
        '(aws.partner/genesys.com/cloud/<org-id>/<integration-name>)',
    );
  }
  const stackName = text('stackName') ?? 'GenesysFlowMetrics';
  if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(stackName)) {
    throw new SettingsError('stackName', `${JSON.stringify(stackName)} is not a CloudFormation stack name`);
  }
  const datadogSite = text('datadogSite') ?? 'datadoghq.com';
  if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(datadogSite)) {
    throw new SettingsError('datadogSite', `${JSON.stringify(datadogSite)} is not a DataDog site such as datadoghq.com`);
  }
  const secretArn = (key: string): string | undefined => {
    const arn = text(key);
    if (arn !== undefined && !/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/.test(arn)) {
      throw new SettingsError(key, `${JSON.stringify(arn)} is not a Secrets Manager secret ARN`);
    }
    return arn;
  };
  const apiKeySecretArn = secretArn('apiKeySecretArn');
  const genesysCredentialsSecretArn = secretArn('genesysCredentialsSecretArn');
  const genesysRegion = text('genesysRegion');
  if (genesysRegion !== undefined && !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(genesysRegion)) {
    throw new SettingsError('genesysRegion', `${JSON.stringify(genesysRegion)} is not a Genesys Cloud region domain such as mypurecloud.ie`);
  }
  if ((genesysRegion === undefined) !== (genesysCredentialsSecretArn === undefined)) {
    throw new SettingsError(
      genesysRegion === undefined ? 'genesysRegion' : 'genesysCredentialsSecretArn',
      'names come from the Genesys API only with both genesysRegion and genesysCredentialsSecretArn',
    );
  }
  const tags = text('tags');
  if (tags !== undefined) {
    for (const tag of tags.split(',').map((t) => t.trim()).filter((t) => t !== '')) {
      if (!/^\p{L}/u.test(tag)) throw new SettingsError('tags', `tag ${JSON.stringify(tag)} must start with a letter`);
    }
  }
  const metricName = text('metricName') ?? 'genesys.flow.metric';
  if (!/^[A-Za-z][A-Za-z0-9_.]{0,199}$/.test(metricName)) {
    throw new SettingsError('metricName', `${JSON.stringify(metricName)} must start with a letter and hold only ASCII letters, digits, '_' and '.'`);
  }
  const retentionDays = integer('retentionDays', 30, MAX_KEY_AGE_DAYS + 1, 3650);
  const logRetentionDays = integer('logRetentionDays', 30, 1, 3653);
  if (!LOG_RETENTION_DAYS.includes(logRetentionDays)) {
    throw new SettingsError('logRetentionDays', `${logRetentionDays} is not a CloudWatch retention (${LOG_RETENTION_DAYS.join(', ')})`);
  }
  const mode = oneOf('mode', ['direct', 'queued'] as const, 'direct');
  // In direct mode the claim lease (timeout plus a margin) must end before Lambda's first retry.
  const timeoutSeconds = () =>
    mode === 'direct'
      ? integer('timeoutSeconds', TIMING.defaultTimeoutSeconds, 5, MAX_DIRECT_TIMEOUT_SECONDS)
      : integer('timeoutSeconds', TIMING.defaultTimeoutSeconds, 5, 300);
  const reserved = text('reservedConcurrency');
  const maxConcurrency = text('maxConcurrency');
  if (mode === 'queued' && reserved !== undefined) {
    throw new SettingsError(
      'reservedConcurrency',
      'is for direct mode: in queued mode set maxConcurrency, or throttled receives count toward the dead-letter queue',
    );
  }
  if (mode === 'direct' && maxConcurrency !== undefined) {
    throw new SettingsError('maxConcurrency', 'is for queued mode: in direct mode set reservedConcurrency');
  }
  const existingBus = text('existingBus');
  if (existingBus !== undefined && !/^[A-Za-z0-9._\-/]{1,256}$/.test(existingBus)) {
    throw new SettingsError('existingBus', `${JSON.stringify(existingBus)} is not an event bus name`);
  }
  const alarmEmail = text('alarmEmail');
  if (alarmEmail !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail)) {
    throw new SettingsError('alarmEmail', `${JSON.stringify(alarmEmail)} is not an email address`);
  }
  const flowOutcomes = oneOf('flowOutcomes', ['true', 'false'] as const, 'false') === 'true';
  return {
    stackName,
    eventSourceName,
    datadogSite,
    apiKeySecretArn,
    tags,
    metricName,
    retentionDays,
    logLevel: oneOf('logLevel', ['error', 'warn', 'info', 'debug', 'trace'] as const, 'info'),
    logRetentionDays,
    architecture: oneOf('architecture', ['arm64', 'x86_64'] as const, 'arm64'),
    mode,
    memorySize: integer('memorySize', 256, 128, 256),
    timeoutSeconds: timeoutSeconds(),
    reservedConcurrency: reserved === undefined ? undefined : integer('reservedConcurrency', 0, 1, 1000),
    // The event source mapping's own bounds.
    maxConcurrency: maxConcurrency === undefined ? undefined : integer('maxConcurrency', 0, 2, 1000),
    alarmEmail,
    existingBus,
    noEventsAlarmHours: integer('noEventsAlarmHours', 6, 1, 24 * 7),
    flowOutcomes,
    genesysRegion,
    genesysCredentialsSecretArn,
    names: readNames(context('names')),
  };
}

/** The fixed name map: an object of id → name strings (or its JSON text, as `-c` gives it). */
function readNames(value: unknown): Record<string, string> | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  let names: unknown = value;
  if (typeof value === 'string') {
    try {
      names = JSON.parse(value);
    } catch (error) {
      throw new SettingsError('names', `is not JSON (${(error as Error).message})`);
    }
  }
  if (typeof names !== 'object' || names === null || Array.isArray(names) || !Object.values(names).every((name) => typeof name === 'string')) {
    throw new SettingsError('names', 'must be an object of id → name strings');
  }
  const bytes = Buffer.byteLength(JSON.stringify(names));
  if (bytes > MAX_NAMES_JSON_BYTES) {
    throw new SettingsError(
      'names',
      `is ${bytes} bytes of JSON; at most ${MAX_NAMES_JSON_BYTES} fit the function's environment: name the rest through the Genesys API (genesysRegion)`,
    );
  }
  return names as Record<string, string>;
}

/** The values stored in `file`, or none if there is no file yet. */
export function loadStoredSettings(file: string = SETTINGS_FILE): Record<string, unknown> {
  if (!fs.existsSync(file)) return {};
  let stored: unknown;
  try {
    stored = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof stored !== 'object' || stored === null || Array.isArray(stored)) {
    throw new Error(`${file}: must hold one JSON object of settings`);
  }
  const unknown = Object.keys(stored).filter((key) => !(SETTING_KEYS as readonly string[]).includes(key));
  if (unknown.length > 0) {
    throw new Error(`${file}: unknown setting(s) ${unknown.join(', ')}; the settings are ${SETTING_KEYS.join(', ')}`);
  }
  return stored as Record<string, unknown>;
}

/**
 * The app's settings: the stored ones, overridden by any given with `-c`; checked, then stored
 * (so the next `cdk deploy` or `cdk destroy` with no flags reproduces this one).
 */
export function appSettings(context: Context, file: string = SETTINGS_FILE): FlowMetricsSettings {
  const stored = loadStoredSettings(file);
  const given: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    const value = context(key);
    if (value !== undefined && value !== null) given[key] = value;
  }
  const merged: Record<string, unknown> = { ...stored, ...given };
  const settings = readSettings((key) => merged[key]);
  if (Object.keys(given).length > 0) {
    const ordered: Record<string, unknown> = {};
    for (const key of SETTING_KEYS) {
      if (merged[key] !== undefined && merged[key] !== '') ordered[key] = merged[key];
    }
    fs.writeFileSync(file, `${JSON.stringify(ordered, null, 2)}\n`);
  }
  return settings;
}
