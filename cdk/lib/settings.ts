import { MAX_DIRECT_TIMEOUT_SECONDS, TIMING } from './timing';

/**
 * The deployment's inputs: read from CDK context (`-c key=value`) and checked, each with a
 * message naming the key.
 */

/** The topic the rule forwards. Genesys keeps the literal `{id}` in `detail-type`. */
export const ATTRIBUTES_DETAIL_TYPE = 'v2.detail.events.conversation.{id}.attributes';

export type Mode = 'direct' | 'queued';
export type Architecture = 'arm64' | 'x86_64';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface FlowMetricsSettings {
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
  readonly reservedConcurrency?: number;
  /** An address to notify of alarms (an SNS topic is created for it). */
  readonly alarmEmail?: string;
}

/** The Rust code's stale age: retention must exceed it. */
export const MAX_KEY_AGE_DAYS = 7;

/** Log retentions CloudWatch accepts. */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

export class SettingsError extends Error {
  constructor(key: string, problem: string) {
    super(`context ${key}: ${problem}`);
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
        'aws.partner/genesys.com/cloud/<org-id>/<integration-name>',
    );
  }
  if (!/^aws\.partner\/genesys\.com\/cloud\/[0-9a-fA-F-]{36}\/[A-Za-z0-9._-]+$/.test(eventSourceName)) {
    throw new SettingsError(
      'eventSourceName',
      `${JSON.stringify(eventSourceName)} is not a Genesys partner event source ` +
        '(aws.partner/genesys.com/cloud/<org-id>/<integration-name>)',
    );
  }
  const datadogSite = text('datadogSite') ?? 'datadoghq.com';
  if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(datadogSite)) {
    throw new SettingsError('datadogSite', `${JSON.stringify(datadogSite)} is not a DataDog site such as datadoghq.com`);
  }
  const apiKeySecretArn = text('apiKeySecretArn');
  if (apiKeySecretArn !== undefined && !/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/.test(apiKeySecretArn)) {
    throw new SettingsError('apiKeySecretArn', `${JSON.stringify(apiKeySecretArn)} is not a Secrets Manager secret ARN`);
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
  const alarmEmail = text('alarmEmail');
  if (alarmEmail !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail)) {
    throw new SettingsError('alarmEmail', `${JSON.stringify(alarmEmail)} is not an email address`);
  }
  return {
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
    alarmEmail,
  };
}
