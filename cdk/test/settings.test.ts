/** The deployment's inputs: defaults, and a clear error naming each bad key. */
import { readSettings, SettingsError } from '../lib/settings';
import { leaseSeconds, MAX_DIRECT_TIMEOUT_SECONDS, TIMING } from '../lib/timing';

const SOURCE = 'aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics';

const read = (context: Record<string, unknown>) => readSettings((key) => context[key]);

test('only the event source is required', () => {
  expect(read({ eventSourceName: SOURCE })).toEqual({
    stackName: 'GenesysFlowMetrics',
    eventSourceName: SOURCE,
    datadogSite: 'datadoghq.com',
    apiKeySecretArn: undefined,
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
    noEventsAlarmHours: 6,
    flowOutcomes: false,
    genesysRegion: undefined,
    genesysCredentialsSecretArn: undefined,
    names: undefined,
  });
});

test('names come from the Genesys API only with a region and a client, and a fixed map must fit', () => {
  const client = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:genesys-client-AbCdEf';
  expect(() => read({ eventSourceName: SOURCE, genesysRegion: 'mypurecloud.ie' })).toThrow(/^setting genesysCredentialsSecretArn:/);
  expect(() => read({ eventSourceName: SOURCE, genesysCredentialsSecretArn: client })).toThrow(/^setting genesysRegion:/);
  expect(() => read({ eventSourceName: SOURCE, genesysRegion: 'Ireland', genesysCredentialsSecretArn: client })).toThrow(
    /^setting genesysRegion: "Ireland" is not a Genesys Cloud region domain/,
  );
  expect(read({ eventSourceName: SOURCE, names: '{"d2c1": "Customer Routing"}' }).names).toEqual({ d2c1: 'Customer Routing' });
  expect(read({ eventSourceName: SOURCE, names: { d2c1: 'Customer Routing' } }).names).toEqual({ d2c1: 'Customer Routing' });
  expect(() => read({ eventSourceName: SOURCE, names: '[1]' })).toThrow(/^setting names: must be an object/);
  const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, 'A flow name']));
  expect(() => read({ eventSourceName: SOURCE, names: many })).toThrow(/^setting names: is \d+ bytes of JSON; at most 2048/);
  expect(() => read({ eventSourceName: SOURCE, flowOutcomes: 'yes' })).toThrow(/^setting flowOutcomes:/);
});

test('numbers may come as strings from -c', () => {
  const settings = read({ eventSourceName: SOURCE, retentionDays: '45', timeoutSeconds: 40, memorySize: '128' });
  expect([settings.retentionDays, settings.timeoutSeconds, settings.memorySize]).toEqual([45, 40, 128]);
});

test('in direct mode the lease of the longest timeout ends before Lambda retries', () => {
  expect(read({ eventSourceName: SOURCE, timeoutSeconds: MAX_DIRECT_TIMEOUT_SECONDS }).timeoutSeconds).toBe(MAX_DIRECT_TIMEOUT_SECONDS);
  expect(leaseSeconds(MAX_DIRECT_TIMEOUT_SECONDS)).toBeLessThan(TIMING.asyncFirstRetrySeconds);
  expect(() => read({ eventSourceName: SOURCE, timeoutSeconds: MAX_DIRECT_TIMEOUT_SECONDS + 1 })).toThrow(
    new RegExp(`^setting timeoutSeconds: .* from 5 to ${MAX_DIRECT_TIMEOUT_SECONDS}`),
  );
  // Queued mode has no such bound: the visibility timeout covers the lease instead.
  expect(read({ eventSourceName: SOURCE, mode: 'queued', timeoutSeconds: '300' }).timeoutSeconds).toBe(300);
});

test('the timing is the one the Rust code uses', () => {
  // src/timing.rs checks the same file against its constants (DEFAULT_LEASE = 40s).
  expect(TIMING.defaultTimeoutSeconds).toBe(30);
  expect(leaseSeconds(TIMING.defaultTimeoutSeconds)).toBe(40);
  expect(read({ eventSourceName: SOURCE }).timeoutSeconds).toBe(TIMING.defaultTimeoutSeconds);
});

test.each([
  [{}, 'eventSourceName', 'is required'],
  [{ eventSourceName: 'aws.partner/salesforce.com/x/y' }, 'eventSourceName', 'is not a Genesys partner event source'],
  [{ datadogSite: 'https://datadoghq.com' }, 'datadogSite', 'is not a DataDog site'],
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
  [{ noEventsAlarmHours: '0' }, 'noEventsAlarmHours', 'from 1 to 168'],
  [{ stackName: '1stack' }, 'stackName', 'is not a CloudFormation stack name'],
])('%j is refused, naming %s', (context, key, problem) => {
  const values = { eventSourceName: SOURCE, ...context };
  if (key === 'eventSourceName' && !('eventSourceName' in context)) delete (values as Record<string, unknown>).eventSourceName;
  expect(() => read(values)).toThrow(SettingsError);
  expect(() => read(values)).toThrow(new RegExp(`^setting ${key}: .*${problem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
});
