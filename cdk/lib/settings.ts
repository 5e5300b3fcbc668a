/**
 * The deployment's inputs: stored in `settings.json` beside the cdk app, so that `cdk deploy`
 * and `cdk destroy` with no flags reproduce the last deployment; `-c key=value` overrides a
 * stored value and is stored in turn. Each value is checked, with a message naming the key and
 * what to write instead.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DATADOG_SITES, nearestDataDogSite } from './datadog-sites';
import { isTimeZone, OPENING_STEP_MINUTES, OpeningHoursError, OpeningWindow, parseOpeningHours } from './opening-hours';
import { MAX_DIRECT_TIMEOUT_SECONDS, TIMING } from './timing';

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
  /** The AWS account and region the stack is deployed to: the ones named in the Genesys
   * integration. Explicit, so that no shell's default decides. */
  readonly account: string;
  readonly region: string;
  /** `aws.partner/genesys.com/cloud/<org-id>/<integration-name>` */
  readonly eventSourceName: string;
  /** DataDog site, e.g. `datadoghq.com`, `datadoghq.eu`. */
  readonly datadogSite: string;
  /** The secret holding the DataDog API key (its full ARN, in this account and region). */
  readonly apiKeySecretArn: string;
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
  /** DataDog notification handles (`@slack-contact-centre`, `@pagerduty-cc`, an email) that
   * `flow-metrics datadog apply` writes into each monitor's message. */
  readonly datadogNotify: string[];
  /** The name of an event bus already associated with the partner event source (in the console
   * or by an earlier stack): the stack then creates no bus. */
  readonly existingBus?: string;
  /** The centre's opening hours in `timeZone` (undefined: always open). */
  readonly openingHours?: OpeningWindow[];
  /** The text they were given as, stored back as is. */
  readonly openingHoursText: string;
  /** The centre's IANA time zone. */
  readonly timeZone: string;
  /** Alarm when the rule matches no event for this many minutes of opening hours. */
  readonly noEventsAlarmMinutes: number;
  /** Paused: events are kept (the queue in queued mode, the dead-letter bucket in direct mode)
   * and not counted until resumed. */
  readonly paused: boolean;
  /** Send `<metricName>.elapsed` beside each count. */
  readonly elapsedMetrics: boolean;
  /** Also forward `….flow.outcome` events: flow milestones and outcomes. */
  readonly flowOutcomes: boolean;
  /** The org's region domain (e.g. `mypurecloud.ie`), to fetch flow, milestone and outcome names. */
  readonly genesysRegion?: string;
  /** An existing secret of `{"clientId", "clientSecret"}`: the org's OAuth client for names. */
  readonly genesysCredentialsSecretArn?: string;
  /** Fixed names, id → name, used ahead of the Genesys API. */
  readonly names?: Record<string, string>;
  /** Reconcile each hour against Genesys's own analytics (a scheduled function, off by default;
   * it needs the Genesys OAuth client, with the analytics permissions). */
  readonly reconcileSchedule: boolean;
}

/** Every key the settings file may hold, in the order it is written. */
export const SETTING_KEYS = [
  'stackName',
  'account',
  'region',
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
  'datadogNotify',
  'timeZone',
  'openingHours',
  'noEventsAlarmMinutes',
  'paused',
  'elapsedMetrics',
  'flowOutcomes',
  'genesysRegion',
  'genesysCredentialsSecretArn',
  'names',
  'reconcileSchedule',
] as const;

/** Settings an earlier version stored, and what took their place. */
export const RETIRED_SETTINGS: Record<string, string> = {
  noEventsAlarmHours: 'replaced by noEventsAlarmMinutes, counted within openingHours',
};

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
  const account = text('account');
  if (account === undefined || !/^\d{12}$/.test(account)) {
    throw new SettingsError(
      'account',
      `${account === undefined ? 'is required' : `${JSON.stringify(account)} is not an AWS account id`}: the 12-digit account ` +
        'named in the Genesys integration (`aws sts get-caller-identity --query Account --output text`)',
    );
  }
  const region = text('region');
  if (region === undefined || !/^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$/.test(region)) {
    throw new SettingsError(
      'region',
      `${region === undefined ? 'is required' : `${JSON.stringify(region)} is not an AWS region`}: the region named in the ` +
        'Genesys integration, such as eu-west-1; the stack, its secrets and the partner event source must all be there',
    );
  }
  const datadogSite = text('datadogSite') ?? 'datadoghq.com';
  if (!DATADOG_SITES.some((s) => s.site === datadogSite)) {
    throw new SettingsError(
      'datadogSite',
      `${JSON.stringify(datadogSite)} is not a DataDog site; did you mean ${JSON.stringify(nearestDataDogSite(datadogSite))}? ` +
        `The sites are ${DATADOG_SITES.map((s) => s.site).join(', ')} (the browser's address without "app.")`,
    );
  }
  // Secrets Manager adds six characters to a secret's name in its ARN; a policy on an ARN
  // without them never matches the secret.
  const secretArn = (key: string, createCommand: string): string | undefined => {
    const arn = text(key);
    if (arn === undefined) return undefined;
    const match = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):(\d{12}):secret:(.+)$/.exec(arn);
    if (!match) {
      throw new SettingsError(key, `${JSON.stringify(arn)} is not a Secrets Manager secret ARN; ${createCommand}`);
    }
    if (!/-[A-Za-z0-9]{6}$/.test(match[3])) {
      throw new SettingsError(
        key,
        `${JSON.stringify(arn)} is a partial ARN: give the full ARN, which ends in "-" and six characters that Secrets Manager ` +
          `adds (aws secretsmanager describe-secret --region ${match[1]} --secret-id ${match[3]} --query ARN --output text)`,
      );
    }
    if (match[1] !== region || match[2] !== account) {
      throw new SettingsError(
        key,
        `${JSON.stringify(arn)} is in ${match[2]}/${match[1]}, not in this stack's ${account}/${region}: ${createCommand}`,
      );
    }
    return arn;
  };
  const apiKeySecretArn = secretArn(
    'apiKeySecretArn',
    `store the key with: aws secretsmanager create-secret --region ${region} --name genesys-flow-metrics/datadog-api-key ` +
      '--secret-string "$DD_API_KEY" --query ARN --output text, and set the ARN it prints',
  );
  if (apiKeySecretArn === undefined) {
    throw new SettingsError(
      'apiKeySecretArn',
      `is required: the secret holding your DataDog API key. Store the key with: aws secretsmanager create-secret --region ${region} ` +
        '--name genesys-flow-metrics/datadog-api-key --secret-string "$DD_API_KEY" --query ARN --output text, and set the ARN it prints',
    );
  }
  const genesysCredentialsSecretArn = secretArn(
    'genesysCredentialsSecretArn',
    `store the client with: aws secretsmanager create-secret --region ${region} --name genesys-flow-metrics/oauth-client ` +
      '--secret-string \'{"clientId": "…", "clientSecret": "…"}\' --query ARN --output text, and set the ARN it prints',
  );
  const genesysRegion = text('genesysRegion');
  if (genesysRegion !== undefined) {
    const bare = genesysRegion.toLowerCase().replace(/^[a-z]+:\/\//, '').replace(/[/?#].*$/, '').replace(/^(apps|login|api)\./, '');
    if (bare !== genesysRegion || !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(genesysRegion)) {
      throw new SettingsError(
        'genesysRegion',
        /^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(bare)
          ? `${JSON.stringify(genesysRegion)} is an address, not the region domain: use ${JSON.stringify(bare)}`
          : `${JSON.stringify(genesysRegion)} is not a Genesys Cloud region domain such as mypurecloud.ie`,
      );
    }
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
  const datadogNotify = (text('datadogNotify') ?? '').split(/[\s,]+/).filter((handle) => handle !== '');
  const notHandle = datadogNotify.find((handle) => !/^@[^@\s]+(@[^@\s]+\.[^@\s]+)?$/.test(handle));
  if (notHandle !== undefined) {
    throw new SettingsError(
      'datadogNotify',
      `${JSON.stringify(notHandle)} is not a DataDog notification handle: write handles as DataDog's monitor messages do, ` +
        'space-separated, e.g. "@slack-contact-centre @pagerduty-cc @ops@example.com"',
    );
  }
  const flowOutcomes = oneOf('flowOutcomes', ['true', 'false'] as const, 'false') === 'true';
  const reconcileSchedule = oneOf('reconcileSchedule', ['true', 'false'] as const, 'false') === 'true';
  if (reconcileSchedule && genesysCredentialsSecretArn === undefined) {
    throw new SettingsError(
      'reconcileSchedule',
      "asks Genesys's analytics with the org's OAuth client: set genesysRegion and genesysCredentialsSecretArn " +
        '(its role needs analytics:flowAggregate:view and analytics:conversationDetail:view), or set it to false',
    );
  }
  const openingHoursText = text('openingHours') ?? 'Mon-Fri 09:00-17:00';
  let openingHours: OpeningWindow[] | undefined;
  try {
    openingHours = parseOpeningHours(openingHoursText);
  } catch (error) {
    if (!(error instanceof OpeningHoursError)) throw error;
    throw new SettingsError('openingHours', `${error.message}; or "always" for a centre that never closes`);
  }
  const timeZone = text('timeZone') ?? (openingHours === undefined ? 'UTC' : undefined);
  if (timeZone === undefined || !isTimeZone(timeZone)) {
    throw new SettingsError(
      'timeZone',
      `${timeZone === undefined ? 'is required' : `${JSON.stringify(timeZone)} is not an IANA time zone`}: the centre's time zone, ` +
        'such as Europe/Dublin or America/Chicago, in which openingHours are read',
    );
  }
  const noEventsAlarmMinutes = integer('noEventsAlarmMinutes', 60, 15, 12 * 60);
  if (noEventsAlarmMinutes % OPENING_STEP_MINUTES !== 0) {
    throw new SettingsError('noEventsAlarmMinutes', `${noEventsAlarmMinutes} must be a multiple of ${OPENING_STEP_MINUTES}`);
  }
  return {
    stackName,
    account,
    region,
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
    datadogNotify,
    existingBus,
    openingHours,
    openingHoursText,
    timeZone,
    noEventsAlarmMinutes,
    paused: oneOf('paused', ['true', 'false'] as const, 'false') === 'true',
    elapsedMetrics: oneOf('elapsedMetrics', ['true', 'false'] as const, 'true') === 'true',
    flowOutcomes,
    genesysRegion,
    genesysCredentialsSecretArn,
    names: readNames(context('names')),
    reconcileSchedule,
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

/** Where a warning about the settings goes: the synth's standard error by default. */
export type Warn = (message: string) => void;
const toStandardError: Warn = (message) => console.error(`warning: ${message}`);

/**
 * The values stored in `file`, or none if there is no file yet. A setting this version does not
 * know is ignored with a warning, not refused: a file written by a newer version still deploys
 * after a rollback.
 */
export function loadStoredSettings(file: string = SETTINGS_FILE, warn: Warn = toStandardError): Record<string, unknown> {
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
  const known: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(stored)) {
    if ((SETTING_KEYS as readonly string[]).includes(key)) {
      known[key] = value;
    } else if (key in RETIRED_SETTINGS) {
      warn(`${file}: setting ${key} is ignored: ${RETIRED_SETTINGS[key]}`);
    } else {
      warn(
        `${file}: unknown setting ${key} is ignored (written by a newer version, or misspelt?); ` +
          `the settings of this version are ${SETTING_KEYS.join(', ')}`,
      );
    }
  }
  return known;
}

/**
 * The app's settings: the stored ones, overridden by any given with `-c`; checked, then stored
 * (so the next `cdk deploy` or `cdk destroy` with no flags reproduces this one). Settings this
 * version does not know stay in the file for the version that wrote them.
 */
export function appSettings(context: Context, file: string = SETTINGS_FILE, warn: Warn = toStandardError): FlowMetricsSettings {
  const stored = loadStoredSettings(file, warn);
  const given: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    const value = context(key);
    if (value !== undefined && value !== null) given[key] = value;
  }
  const merged: Record<string, unknown> = { ...stored, ...given };
  const settings = readSettings((key) => merged[key]);
  if (Object.keys(given).length > 0) {
    const everything: Record<string, unknown> = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
    const ordered: Record<string, unknown> = {};
    for (const key of SETTING_KEYS) {
      if (merged[key] !== undefined && merged[key] !== '') ordered[key] = merged[key];
    }
    for (const [key, value] of Object.entries(everything)) {
      if (!(SETTING_KEYS as readonly string[]).includes(key)) ordered[key] = value;
    }
    fs.writeFileSync(file, `${JSON.stringify(ordered, null, 2)}\n`);
  }
  return settings;
}

/**
 * How the shell's AWS credentials and default region compare with the settings: credentials of
 * another account are an error (a deploy would fail, or land elsewhere); another default region
 * is only worth saying, since the stack goes to `region` whatever the shell's default.
 */
export function credentialsMismatch(
  settings: Pick<FlowMetricsSettings, 'account' | 'region'>,
  shellAccount: string | undefined,
  shellRegion: string | undefined,
): { error?: string; warning?: string } {
  if (shellAccount !== undefined && shellAccount !== settings.account) {
    return {
      error:
        `your AWS credentials are for account ${shellAccount}, but cdk/settings.json deploys to ${settings.account}: ` +
        'use credentials of that account (AWS_PROFILE=…), or correct "account"',
    };
  }
  if (shellRegion !== undefined && shellRegion !== settings.region) {
    return {
      warning:
        `your shell's AWS_REGION is ${shellRegion}; this stack deploys to ${settings.region} (cdk/settings.json "region"), ` +
        `so give --region ${settings.region} to the aws commands that follow`,
    };
  }
  return {};
}
