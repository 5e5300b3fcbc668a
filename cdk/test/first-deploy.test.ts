/**
 * The wrong turns of a first deploy, each stopped at synth with a message that names the fix, and
 * the states an admin can leave the stack in (paused, closed for the night, a large failed
 * event, a rollback) keeping every event and raising no false alarm.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DATADOG_SITES, nearestDataDogSite } from '../lib/datadog-sites';
import { FlowMetricsStack } from '../lib/flow-metrics-stack';
import { OpeningWindow, openingHeartbeatCrons, parseOpeningHours } from '../lib/opening-hours';
import { appSettings, credentialsMismatch, readSettings } from '../lib/settings';

const SOURCE = 'aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics';
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:datadog-api-key-AbCdEf';
const REQUIRED = { eventSourceName: SOURCE, account: '123456789012', region: 'eu-west-1', apiKeySecretArn: SECRET_ARN, timeZone: 'Europe/Dublin' };

const read = (context: Record<string, unknown>) => readSettings((key) => ({ ...REQUIRED, ...context })[key]);

function synth(context: Record<string, string> = {}): { stack: FlowMetricsStack; template: Template } {
  const app = new App();
  const stack = new FlowMetricsStack(app, 'Test', {
    settings: read(context),
    prebuiltCode: lambda.Code.fromAsset(path.join(__dirname, 'placeholder-asset')),
  });
  return { stack, template: Template.fromStack(stack) };
}

type Resource = { Properties: Record<string, unknown>; DependsOn?: string[] };
const resources = (template: Template, type: string) => Object.values(template.findResources(type)) as Resource[];
const alarmDescriptions = (template: Template) => resources(template, 'AWS::CloudWatch::Alarm').map((a) => String(a.Properties.AlarmDescription));

describe('the DataDog site', () => {
  test('DataDog\'s documented site parameters, and only those, are accepted', () => {
    expect(DATADOG_SITES.map((s) => s.site).sort()).toEqual(
      [
        'ap1.datadoghq.com',
        'ap2.datadoghq.com',
        'datadoghq.com',
        'datadoghq.eu',
        'ddog-gov.com',
        'us2.ddog-gov.com',
        'us3.datadoghq.com',
        'us5.datadoghq.com',
      ].sort(),
    );
    for (const { site } of DATADOG_SITES) expect(read({ datadogSite: site }).datadogSite).toBe(site);
  });

  test.each([
    ['app.datadoghq.eu', 'datadoghq.eu'],
    ['app.datadoghq.com', 'datadoghq.com'],
    ['https://app.datadoghq.com/dashboard/lists', 'datadoghq.com'],
    ['https://us5.datadoghq.com/', 'us5.datadoghq.com'],
    ['api.ap1.datadoghq.com', 'ap1.datadoghq.com'],
    ['app.ddog-gov.com', 'ddog-gov.com'],
    ['datadoghq.de', 'datadoghq.eu'],
    ['us4.datadoghq.com', 'us3.datadoghq.com'],
  ])('%s is refused, naming %s', (given, meant) => {
    expect(nearestDataDogSite(given)).toBe(meant);
    expect(() => read({ datadogSite: given })).toThrow(`setting datadogSite: ${JSON.stringify(given)} is not a DataDog site; did you mean "${meant}"?`);
  });
});

describe('secret ARNs', () => {
  test.each(['apiKeySecretArn', 'genesysCredentialsSecretArn'])('%s must be a full ARN, in the stack\'s account and region', (key) => {
    const genesys = key === 'genesysCredentialsSecretArn' ? { genesysRegion: 'mypurecloud.ie' } : {};
    const arn = (region: string, account: string, name: string) => `arn:aws:secretsmanager:${region}:${account}:secret:${name}`;
    expect(() => read({ ...genesys, [key]: arn('eu-west-1', '123456789012', 'genesys-flow-metrics/secret') })).toThrow(
      new RegExp(`^setting ${key}: .* is a partial ARN: give the full ARN.*describe-secret --region eu-west-1 --secret-id genesys-flow-metrics/secret`),
    );
    expect(() => read({ ...genesys, [key]: arn('us-east-1', '123456789012', 'datadog-AbCdEf') })).toThrow(
      new RegExp(`^setting ${key}: .* is in 123456789012/us-east-1, not in this stack's 123456789012/eu-west-1: .*create-secret --region eu-west-1`),
    );
    expect(() => read({ ...genesys, [key]: arn('eu-west-1', '210987654321', 'datadog-AbCdEf') })).toThrow(/not in this stack's/);
    expect(read({ ...genesys, [key]: arn('eu-west-1', '123456789012', 'datadog-AbCdEf') })[key as 'apiKeySecretArn']).toMatch(/AbCdEf$/);
  });

  test('without a DataDog key the synth stops and says how to store one, in the stack\'s region', () => {
    expect(() => read({ apiKeySecretArn: undefined, region: 'ap-southeast-2' })).toThrow(
      'setting apiKeySecretArn: is required: the secret holding your DataDog API key. Store the key with: ' +
        'aws secretsmanager create-secret --region ap-southeast-2 --name genesys-flow-metrics/datadog-api-key',
    );
  });
});

describe('the Genesys region', () => {
  test.each([
    ['apps.mypurecloud.ie', 'mypurecloud.ie'],
    ['https://apps.mypurecloud.ie/directory/', 'mypurecloud.ie'],
    ['login.usw2.pure.cloud', 'usw2.pure.cloud'],
  ])('the browser\'s %s is refused, naming %s', (given, meant) => {
    expect(() => read({ genesysRegion: given, genesysCredentialsSecretArn: SECRET_ARN })).toThrow(
      `setting genesysRegion: ${JSON.stringify(given)} is an address, not the region domain: use "${meant}"`,
    );
  });
});

describe('account and region', () => {
  test('credentials of another account stop the deploy; another default region is said', () => {
    const settings = read({});
    expect(credentialsMismatch(settings, '999999999999', 'eu-west-1').error).toMatch(/credentials are for account 999999999999.*deploys to 123456789012/);
    expect(credentialsMismatch(settings, '123456789012', 'us-east-1')).toEqual({
      warning: expect.stringMatching(/AWS_REGION is us-east-1; this stack deploys to eu-west-1.*--region eu-west-1/),
    });
    expect(credentialsMismatch(settings, undefined, undefined)).toEqual({});
  });
});

describe('pause', () => {
  test('direct: the function takes nothing and Lambda keeps each event whole in the dead-letter bucket, the rule stays on', () => {
    const { stack, template } = synth({ paused: 'true' });
    template.hasResourceProperties('AWS::Events::Rule', { State: 'ENABLED' });
    template.hasResourceProperties('AWS::Lambda::Function', { ReservedConcurrentExecutions: 0 });
    const bucket = Object.keys(template.findResources('AWS::S3::Bucket'))[0];
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [bucket, 'Arn'] } } },
    });
    // Every event of a pause is a throttle and a record in the bucket: the alarms say "paused".
    expect(resources(template, 'AWS::CloudWatch::Alarm').map((a) => a.Properties.MetricName)).not.toContain('Throttles');
    expect(alarmDescriptions(template)).toContainEqual(expect.stringMatching(/^PAUSED: events wait in the dead-letter bucket \(not lost\); they can be drained for 23 days/));
    expect(template.findOutputs('Paused').Paused.Value).toMatch(/^yes: events are kept \(in the dead-letter bucket; drainable for 23 days\)/);
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('PAUSED: events are kept, not counted.*flow-metrics drain --bucket'));
  });

  test('queued: the queue keeps the events for 14 days, the function does not read it, the rule stays on', () => {
    const { stack, template } = synth({ mode: 'queued', paused: 'true' });
    template.hasResourceProperties('AWS::Events::Rule', { State: 'ENABLED' });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { Enabled: false });
    template.hasResourceProperties('AWS::SQS::Queue', { RedrivePolicy: Match.anyValue(), MessageRetentionPeriod: 14 * 24 * 3600 });
    expect(alarmDescriptions(template)).toContainEqual(expect.stringMatching(/^PAUSED: events wait in the event queue \(not lost\), kept 14 days/));
    Annotations.fromStack(stack).hasWarning('*', Match.stringLikeRegexp('PAUSED: events are kept, not counted \\(in the event queue, up to 14 days\\)'));
  });

  test('resumed, nothing is held back and no warning is given', () => {
    const { stack, template } = synth({ mode: 'queued' });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { Enabled: true });
    Annotations.fromStack(stack).hasNoWarning('*', Match.stringLikeRegexp('PAUSED'));
    const direct = synth().template;
    expect((resources(direct, 'AWS::Lambda::Function')[0].Properties.ReservedConcurrentExecutions)).toBeUndefined();
  });
});

describe('opening hours', () => {
  /** Whether one of our cron expressions fires at this local day and minute. */
  const fires = (cron: string, day: string, minute: number): boolean => {
    const [minutes, hours, , , days] = /^cron\((.*)\)$/.exec(cron)![1].split(' ');
    const inList = (field: string, value: number) =>
      field.split(',').some((part) => {
        const step = /^(\d+)\/(\d+)$/.exec(part);
        if (step) return value >= Number(step[1]) && (value - Number(step[1])) % Number(step[2]) === 0;
        const range = /^(\d+)-(\d+)$/.exec(part);
        if (range) return value >= Number(range[1]) && value <= Number(range[2]);
        return Number(part) === value;
      });
    return days.split(',').includes(day) && inList(hours, Math.floor(minute / 60)) && inList(minutes, minute % 60);
  };
  const isOpen = (windows: OpeningWindow[], day: string, minute: number) =>
    windows.some((w) => (w.days as string[]).includes(day) && minute >= w.start && minute < w.end);

  test.each(['Mon-Fri 08:30-17:45; Sat 09:00-13:00', 'Mon,Wed,Fri 07:00-07:20', 'Tue-Thu 00:00-24:00', 'Sun 23:55-24:00'])(
    'the heartbeat marks every five minutes of %s and no other',
    (hours) => {
      const windows = parseOpeningHours(hours)!;
      const crons = openingHeartbeatCrons(windows);
      for (const day of ['MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN']) {
        for (let minute = 0; minute < 24 * 60; minute += 5) {
          expect([day, minute, crons.some((cron) => fires(cron, day, minute))]).toEqual([day, minute, isOpen(windows, day, minute)]);
        }
      }
    },
  );

  test('the no-events alarm fires only when the centre has been open and silent that long, in its time zone', () => {
    const { template } = synth({ openingHours: 'Mon-Fri 08:00-18:00', timeZone: 'America/Chicago', noEventsAlarmMinutes: '45' });
    const schedules = resources(template, 'AWS::Scheduler::Schedule');
    expect(schedules.map((s) => s.Properties.ScheduleExpression)).toEqual(['cron(0/5 8-17 ? * MON,TUE,WED,THU,FRI *)']);
    expect(schedules[0].Properties).toEqual(
      expect.objectContaining({
        ScheduleExpressionTimezone: 'America/Chicago',
        Target: expect.objectContaining({
          Arn: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':scheduler:::aws-sdk:cloudwatch:putMetricData']] },
          Input: JSON.stringify({
            Namespace: 'GenesysFlowMetrics',
            MetricData: [{ MetricName: 'OpeningHours', Dimensions: [{ Name: 'Stack', Value: 'Test' }], Value: 1, Unit: 'Count' }],
          }),
        }),
      }),
    );
    // Open for 45 minutes (no mark is closed), and silent for 45 minutes (no point is no event).
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'OpeningHours',
      Namespace: 'GenesysFlowMetrics',
      Dimensions: [{ Name: 'Stack', Value: 'Test' }],
      Period: 300,
      Statistic: 'Sum',
      EvaluationPeriods: 9,
      DatapointsToAlarm: 9,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1,
      TreatMissingData: 'notBreaching',
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'MatchedEvents',
      Namespace: 'AWS/Events',
      Period: 300,
      EvaluationPeriods: 9,
      DatapointsToAlarm: 9,
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      TreatMissingData: 'breaching',
    });
    const alarmId = (metric: string) =>
      Object.entries(template.findResources('AWS::CloudWatch::Alarm')).find(([, a]) => (a as Resource).Properties.MetricName === metric)![0];
    template.hasResourceProperties('AWS::CloudWatch::CompositeAlarm', {
      AlarmRule: {
        'Fn::Join': [
          '',
          [
            '(ALARM("',
            { 'Fn::GetAtt': [alarmId('OpeningHours'), 'Arn'] },
            '") AND ALARM("',
            { 'Fn::GetAtt': [alarmId('MatchedEvents'), 'Arn'] },
            '"))',
          ],
        ],
      },
    });
    // The schedules may only mark hours in the stack's own namespace.
    const policy = resources(template, 'AWS::IAM::Policy').find((p) => JSON.stringify(p).includes('MarkOpeningHours'))!;
    expect((policy.Properties.PolicyDocument as { Statement: unknown[] }).Statement).toEqual([
      {
        Sid: 'MarkOpeningHours',
        Effect: 'Allow',
        Action: 'cloudwatch:PutMetricData',
        Resource: '*',
        Condition: { StringEquals: { 'cloudwatch:namespace': 'GenesysFlowMetrics' } },
      },
    ]);
  });

  test('a centre that never closes alarms on any silence, with no schedule', () => {
    const { template } = synth({ openingHours: 'always', timeZone: '' });
    template.resourceCountIs('AWS::Scheduler::Schedule', 0);
    template.resourceCountIs('AWS::CloudWatch::CompositeAlarm', 0);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'MatchedEvents',
      EvaluationPeriods: 12,
      ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
    });
  });
});

describe('a failed event of any size reaches the dead letter whole', () => {
  test('direct mode: Lambda\'s on-failure record (the event plus its details) goes to a bucket, where no message size applies', () => {
    const { template } = synth();
    const destinations = resources(template, 'AWS::Lambda::EventInvokeConfig').map(
      (c) => ((c.Properties.DestinationConfig as { OnFailure: { Destination: { 'Fn::GetAtt': string[] } } }).OnFailure.Destination['Fn::GetAtt'][0]),
    );
    expect(destinations).toEqual(Object.keys(template.findResources('AWS::S3::Bucket')));
    expect(template.findOutputs('DeadLetterBucketName')).not.toEqual({});
  });

  test.each(['direct', 'queued'])('%s mode: every queue takes a whole EventBridge event (256 KB)', (mode) => {
    const { template } = synth({ mode });
    const queues = resources(template, 'AWS::SQS::Queue');
    expect(queues.length).toBe(mode === 'queued' ? 2 : 1);
    for (const queue of queues) {
      const size = queue.Properties.MaximumMessageSize as number | undefined;
      expect(size === undefined || size >= 256 * 1024).toBe(true);
    }
  });
});

describe('rollback: an older version reads a settings file written by a newer one', () => {
  const file = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'flow-metrics-settings-')), 'settings.json');

  test('a setting it does not know is ignored with a warning, and kept in the file for the newer version', () => {
    const stored = file();
    fs.writeFileSync(stored, JSON.stringify({ ...REQUIRED, settingOfANewerVersion: 'x' }));
    const warnings: string[] = [];
    const settings = appSettings(() => undefined, stored, (message) => warnings.push(message));
    expect(settings.eventSourceName).toBe(SOURCE);
    expect(warnings).toEqual([expect.stringMatching(/unknown setting settingOfANewerVersion is ignored \(written by a newer version, or misspelt\?\)/)]);
    appSettings((key) => (key === 'logLevel' ? 'debug' : undefined), stored, () => undefined);
    expect(JSON.parse(fs.readFileSync(stored, 'utf8'))).toEqual({ ...REQUIRED, logLevel: 'debug', settingOfANewerVersion: 'x' });
  });

  test('a retired setting says what replaced it', () => {
    const stored = file();
    fs.writeFileSync(stored, JSON.stringify({ ...REQUIRED, noEventsAlarmHours: 6 }));
    const warnings: string[] = [];
    appSettings(() => undefined, stored, (message) => warnings.push(message));
    expect(warnings).toEqual([expect.stringContaining('setting noEventsAlarmHours is ignored: replaced by noEventsAlarmMinutes')]);
  });
});
