/** The deployment's inputs: defaults, and a clear error naming each bad key. */
import { readSettings, SettingsError } from '../lib/settings';
import { leaseSeconds, MAX_DIRECT_TIMEOUT_SECONDS, TIMING } from '../lib/timing';

const SOURCE = 'aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:datadog-api-key-AbCdEf';
/** What every deployment must say: where it goes, where its key is, and the centre's time zone. */
const REQUIRED = { eventSourceName: SOURCE, account: '123456789012', region: 'eu-west-1', apiKeySecretArn: SECRET_ARN, timeZone: 'Europe/Dublin' };

const read = (context: Record<string, unknown>) => readSettings((key) => ({ ...REQUIRED, ...context })[key]);

test('the source, account, region, key and time zone are required; the rest has defaults', () => {
  expect(read({})).toEqual({
    stackName: 'GenesysFlowMetrics',
    account: '123456789012',
    region: 'eu-west-1',
    eventSourceName: SOURCE,
    datadogNotify: [],
    datadogSite: 'datadoghq.com',
    apiKeySecretArn: SECRET_ARN,
    tags: undefined,
    metricName: 'genesys.flow.metric',
    retentionDays: 30,
    logLevel: 'info',
    logRetentionDays: 30,
    architecture: 'arm64',
    mode: 'direct',
    memorySize: 256,
    timeoutSeconds: 30,
    reservedConcurrency: undefined,
    maxConcurrency: undefined,
    alarmEmail: undefined,
    existingBus: undefined,
    openingHours: [{ days: ['MON', 'TUE', 'WED', 'THU', 'FRI'], start: 9 * 60, end: 17 * 60 }],
    openingHoursText: 'Mon-Fri 09:00-17:00',
    timeZone: 'Europe/Dublin',
    noEventsAlarmMinutes: 60,
    paused: false,
    reconcileSchedule: false,
    elapsedMetrics: true,
    flowOutcomes: false,
    genesysRegion: undefined,
    genesysCredentialsSecretArn: undefined,
    names: undefined,
  });
});

test('names come from the Genesys API only with a region and a client, and a fixed map must fit', () => {
  const client = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:genesys-client-AbCdEf';
  expect(() => read({ genesysRegion: 'mypurecloud.ie' })).toThrow(/^setting genesysCredentialsSecretArn:/);
  expect(() => read({ genesysCredentialsSecretArn: client })).toThrow(/^setting genesysRegion:/);
  expect(() => read({ genesysRegion: 'Ireland', genesysCredentialsSecretArn: client })).toThrow(
    /^setting genesysRegion: "Ireland" is not a Genesys Cloud region domain/,
  );
  expect(read({ names: '{"d2c1": "Customer Routing"}' }).names).toEqual({ d2c1: 'Customer Routing' });
  expect(read({ names: { d2c1: 'Customer Routing' } }).names).toEqual({ d2c1: 'Customer Routing' });
  expect(() => read({ names: '[1]' })).toThrow(/^setting names: must be an object/);
  const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, 'A flow name']));
  expect(() => read({ names: many })).toThrow(/^setting names: is \d+ bytes of JSON; at most 2048/);
  expect(() => read({ flowOutcomes: 'yes' })).toThrow(/^setting flowOutcomes:/);
});

test('numbers may come as strings from -c', () => {
  const settings = read({ retentionDays: '45', timeoutSeconds: 40, memorySize: '128' });
  expect([settings.retentionDays, settings.timeoutSeconds, settings.memorySize]).toEqual([45, 40, 128]);
});

test('in direct mode the lease of the longest timeout ends before Lambda retries', () => {
  expect(read({ timeoutSeconds: MAX_DIRECT_TIMEOUT_SECONDS }).timeoutSeconds).toBe(MAX_DIRECT_TIMEOUT_SECONDS);
  expect(leaseSeconds(MAX_DIRECT_TIMEOUT_SECONDS)).toBeLessThan(TIMING.asyncFirstRetrySeconds);
  expect(() => read({ timeoutSeconds: MAX_DIRECT_TIMEOUT_SECONDS + 1 })).toThrow(
    new RegExp(`^setting timeoutSeconds: .* from 5 to ${MAX_DIRECT_TIMEOUT_SECONDS}`),
  );
  // Queued mode has no such bound: the visibility timeout covers the lease instead.
  expect(read({ mode: 'queued', timeoutSeconds: '300' }).timeoutSeconds).toBe(300);
});

test('the timing is the one the Rust code uses', () => {
  // src/timing.rs checks the same file against its constants (DEFAULT_LEASE = 40s).
  expect(TIMING.defaultTimeoutSeconds).toBe(30);
  expect(leaseSeconds(TIMING.defaultTimeoutSeconds)).toBe(40);
  expect(read({}).timeoutSeconds).toBe(TIMING.defaultTimeoutSeconds);
});

test.each([
  [{ eventSourceName: undefined }, 'eventSourceName', 'is required'],
  [{ account: undefined }, 'account', 'is required'],
  [{ account: '1234' }, 'account', 'is not an AWS account id'],
  [{ region: undefined }, 'region', 'is required'],
  [{ region: 'Ireland' }, 'region', 'is not an AWS region'],
  [{ apiKeySecretArn: undefined }, 'apiKeySecretArn', 'is required: the secret holding your DataDog API key. Store the key with: aws secretsmanager create-secret --region eu-west-1'],
  [{ timeZone: undefined }, 'timeZone', 'is required'],
  [{ timeZone: 'IST' }, 'timeZone', 'is not an IANA time zone'],
  [{ openingHours: 'weekdays' }, 'openingHours', 'is not "<days> HH:MM-HH:MM"'],
  [{ openingHours: 'Mon-Fri 18:00-08:00' }, 'openingHours', 'closes before it opens'],
  [{ openingHours: 'Mon-Fri 08:07-18:00' }, 'openingHours', 'in steps of 5 minutes'],
  [{ openingHours: 'Sun-Mon 08:00-18:00' }, 'openingHours', 'runs backwards'],
  [{ noEventsAlarmMinutes: '62' }, 'noEventsAlarmMinutes', 'must be a multiple of 5'],
  [{ noEventsAlarmMinutes: '5' }, 'noEventsAlarmMinutes', 'from 15 to 720'],
  [{ paused: 'yes' }, 'paused', 'must be one of true, false'],
  [{ elapsedMetrics: 'no' }, 'elapsedMetrics', 'must be one of true, false'],
  [{ eventSourceName: 'aws.partner/salesforce.com/x/y' }, 'eventSourceName', 'is not a Genesys partner event source'],
  [{ datadogSite: 'https://datadoghq.com' }, 'datadogSite', 'is not a DataDog site; did you mean "datadoghq.com"?'],
  [{ apiKeySecretArn: 'my-secret' }, 'apiKeySecretArn', 'is not a Secrets Manager secret ARN'],
  [{ tags: 'env:prod,1bad' }, 'tags', 'must start with a letter'],
  [{ metricName: 'flow metric' }, 'metricName', 'must start with a letter'],
  [{ retentionDays: '7' }, 'retentionDays', 'from 8 to 3650'],
  [{ logLevel: 'verbose' }, 'logLevel', 'must be one of error, warn, info, debug, trace'],
  [{ logRetentionDays: '10' }, 'logRetentionDays', 'is not a CloudWatch retention'],
  [{ architecture: 'aarch64' }, 'architecture', 'must be one of arm64, x86_64'],
  [{ mode: 'batch' }, 'mode', 'must be one of direct, queued'],
  [{ memorySize: '512' }, 'memorySize', 'from 128 to 256'],
  [{ timeoutSeconds: 'thirty' }, 'timeoutSeconds', 'must be a whole number'],
  [{ reservedConcurrency: '0' }, 'reservedConcurrency', 'from 1 to 1000'],
  [{ alarmEmail: 'team' }, 'alarmEmail', 'is not an email address'],
  [{ mode: 'queued', reservedConcurrency: '5' }, 'reservedConcurrency', 'in queued mode set maxConcurrency'],
  [{ maxConcurrency: '5' }, 'maxConcurrency', 'is for queued mode'],
  [{ mode: 'queued', maxConcurrency: '1' }, 'maxConcurrency', 'from 2 to 1000'],
  [{ existingBus: 'my bus' }, 'existingBus', 'is not an event bus name'],
  [{ stackName: '1stack' }, 'stackName', 'is not a CloudFormation stack name'],
])('%j is refused, naming %s', (context, key, problem) => {
  expect(() => read(context)).toThrow(SettingsError);
  expect(() => read(context)).toThrow(new RegExp(`^setting ${key}: .*${problem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
});
