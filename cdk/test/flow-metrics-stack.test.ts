/**
 * The synthesized template, resource by resource, in both modes. A placeholder code package is
 * used so that these tests never start a Rust release build.
 */
import * as path from 'path';
import { App, CfnElement } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { FlowMetricsStack } from '../lib/flow-metrics-stack';
import { ledgerSchema } from '../lib/ledger-schema';
import { awsSolutionsFindings, describeFinding } from '../lib/nag';
import * as fs from 'fs';
import * as os from 'os';
import { appSettings, ATTRIBUTES_DETAIL_TYPE, FLOW_OUTCOME_DETAIL_TYPE, FlowMetricsSettings, readSettings } from '../lib/settings';
import { TIMING } from '../lib/timing';

const SOURCE = 'aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics';
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:datadog-api-key-AbCdEf';
const PLACEHOLDER_DIR = path.join(__dirname, 'placeholder-asset');
/** The settings a deployment must have. */
const REQUIRED = { eventSourceName: SOURCE, account: '123456789012', region: 'eu-west-1', apiKeySecretArn: SECRET_ARN, timeZone: 'Europe/Dublin' };

function synth(context: Record<string, string> = {}): { stack: FlowMetricsStack; template: Template } {
  const values: Record<string, string> = { ...REQUIRED, ...context };
  return synthSettings(readSettings((key) => values[key]));
}

function synthSettings(settings: FlowMetricsSettings): { stack: FlowMetricsStack; template: Template } {
  const app = new App();
  const stack = new FlowMetricsStack(app, 'Test', { settings, prebuiltCode: lambda.Code.fromAsset(PLACEHOLDER_DIR) });
  return { stack, template: Template.fromStack(stack) };
}

/** The single resource of a type, as its logical id. */
function logicalId(template: Template, type: string): string {
  const ids = Object.keys(template.findResources(type));
  expect(ids).toHaveLength(1);
  return ids[0];
}

/** The function role's policy statements, each statement's actions sorted. */
function policyStatements(template: Template): unknown[] {
  const policies = Object.entries(template.findResources('AWS::IAM::Policy'))
    .filter(([id]) => id.startsWith('FunctionRole'))
    .map(([, policy]) => policy);
  expect(policies).toHaveLength(1);
  const statements = (policies[0] as { Properties: { PolicyDocument: { Statement: Array<{ Action: unknown }> } } })
    .Properties.PolicyDocument.Statement;
  return statements.map((statement) => ({
    ...statement,
    Action: Array.isArray(statement.Action) ? [...statement.Action].sort() : statement.Action,
  }));
}

/** The function's `invocation` log line, as its binary writes it. */
const INVOCATION_LINE = path.join(__dirname, '..', '..', 'tests', 'fixtures', 'invocation-line.json');

/** What a CloudWatch Logs JSON selector (`$.fields.keys_counted`) picks from a line. */
function selectJson(line: unknown, selector: string): unknown {
  if (!/^\$(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(selector)) throw new Error(`not a plain JSON selector: ${selector}`);
  return selector
    .split('.')
    .slice(1)
    .reduce<unknown>((value, key) => (value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined), line);
}

/** Whether a CloudWatch Logs JSON filter pattern of one equality (`{ $.a.b = "x" }`) matches a line. */
function matchesJsonPattern(pattern: string, line: unknown): boolean {
  const equality = /^\{\s*(\$(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*=\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?)\s*\}$/.exec(pattern);
  if (!equality) throw new Error(`not a one-equality JSON filter pattern: ${pattern}`);
  return selectJson(line, equality[1]) === JSON.parse(equality[2]);
}

describe('stored settings', () => {
  const file = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'flow-metrics-settings-')), 'settings.json');
  const flags = (values: Record<string, string>) => (key: string) => values[key];

  test('a deploy with no flags reproduces the last one', () => {
    const stored = file();
    const first = appSettings(
      flags({ ...REQUIRED, mode: 'queued', maxConcurrency: '4', tags: 'env:prod' }),
      stored,
    );
    const second = appSettings(flags({}), stored);
    expect(second).toEqual(first);
    expect(synthSettings(second).template.toJSON()).toEqual(synthSettings(first).template.toJSON());
    // The queue, the key and the concurrency cap are all still there.
    expect(second).toEqual(expect.objectContaining({ mode: 'queued', apiKeySecretArn: SECRET_ARN, maxConcurrency: 4 }));
  });

  test('a flag overrides one stored setting and is stored in turn', () => {
    const stored = file();
    appSettings(flags({ ...REQUIRED, logLevel: 'debug' }), stored);
    appSettings(flags({ logLevel: 'warn' }), stored);
    expect(JSON.parse(fs.readFileSync(stored, 'utf8'))).toEqual({ ...REQUIRED, logLevel: 'warn' });
    expect(appSettings(flags({}), stored).logLevel).toBe('warn');
  });

  test('without stored settings, the message says where to put them', () => {
    expect(() => appSettings(flags({}), file())).toThrow(/^setting eventSourceName: is required.*cdk\/settings\.json/);
  });

  test('a bad stored value is refused, naming it, and nothing is overwritten', () => {
    const stored = file();
    fs.writeFileSync(stored, JSON.stringify({ ...REQUIRED, mode: 'batch' }));
    expect(() => appSettings(flags({ logLevel: 'info' }), stored)).toThrow(/^setting mode: /);
    expect(JSON.parse(fs.readFileSync(stored, 'utf8'))).toEqual({ ...REQUIRED, mode: 'batch' });
  });
});

describe('the event bus and rule', () => {
  const { template } = synth();

  test('the bus is the Genesys partner event source', () => {
    template.hasResourceProperties('AWS::Events::EventBus', { Name: SOURCE, EventSourceName: SOURCE });
  });

  test('the rule takes attribute updates from this organisation only, and is on', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventBusName: { Ref: logicalId(template, 'AWS::Events::EventBus') },
      EventPattern: { source: [SOURCE], 'detail-type': [ATTRIBUTES_DETAIL_TYPE] },
      State: 'ENABLED',
    });
  });

  test('with flowOutcomes the same rule also takes flow outcome events', () => {
    const withOutcomes = synth({ flowOutcomes: 'true' }).template;
    withOutcomes.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: [SOURCE], 'detail-type': [ATTRIBUTES_DETAIL_TYPE, FLOW_OUTCOME_DETAIL_TYPE] },
    });
    withOutcomes.resourceCountIs('AWS::Events::Rule', 1);
  });

  test('the retained resources wait for the bus, so a failed bus leaves nothing behind', () => {
    const bus = logicalId(template, 'AWS::Events::EventBus');
    for (const type of ['AWS::DynamoDB::Table', 'AWS::S3::Bucket']) {
      const [resource] = Object.values(template.findResources(type));
      expect((resource as { DependsOn?: string[] }).DependsOn).toContain(bus);
    }
    const queues = Object.values(template.findResources('AWS::SQS::Queue'));
    expect(queues.every((queue) => (queue as { DependsOn?: string[] }).DependsOn?.includes(bus))).toBe(true);
  });

  test('an existing bus is used, not created', () => {
    const { template: existing } = synth({ existingBus: SOURCE });
    existing.resourceCountIs('AWS::Events::EventBus', 0);
    existing.hasResourceProperties('AWS::Events::Rule', { EventBusName: SOURCE, State: 'ENABLED' });
  });
});

describe('the ledger table', () => {
  const { template } = synth();
  const schema = ledgerSchema();

  test('its keys and TTL are the ones the Rust code uses', () => {
    expect(schema).toEqual(
      expect.objectContaining({ partitionKey: 'conversation_id', sortKey: 'attribute_key', timeToLive: 'expires_at' }),
    );
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: schema.partitionKey, KeyType: 'HASH' },
        { AttributeName: schema.sortKey, KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: schema.partitionKey, AttributeType: 'S' },
        { AttributeName: schema.sortKey, AttributeType: 'S' },
      ],
      TimeToLiveSpecification: { AttributeName: schema.timeToLive, Enabled: true },
    });
  });

  test('it is on-demand, recoverable, protected, retained and encrypted', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: true,
        SSESpecification: { SSEEnabled: true },
      }),
    });
  });
});

describe('the function', () => {
  test('runs the Rust binary on provided.al2023 with its configuration', () => {
    const { template } = synth({ tags: 'env:prod,team:contact-centre', datadogSite: 'datadoghq.eu' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'provided.al2023',
      Handler: 'bootstrap',
      Architectures: ['arm64'],
      MemorySize: 256,
      Timeout: 30,
      LoggingConfig: Match.objectLike({ LogFormat: 'JSON', ApplicationLogLevel: 'INFO' }),
      Environment: {
        Variables: {
          FLOW_METRICS_TABLE: { Ref: logicalId(template, 'AWS::DynamoDB::Table') },
          DD_SITE: 'datadoghq.eu',
          DD_API_KEY_SECRET_ARN: SECRET_ARN,
          DD_TAGS: 'env:prod,team:contact-centre',
          FLOW_METRICS_METRIC: 'genesys.flow.metric',
          FLOW_METRICS_RETENTION: '30d',
          FLOW_METRICS_LEASE: '40s',
          RUST_LOG: 'info',
        },
      },
    });
  });

  test('its claim lease outlives its timeout and ends before the first asynchronous retry', () => {
    const { template } = synth({ timeoutSeconds: '45' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Timeout: 45,
      Environment: { Variables: Match.objectLike({ FLOW_METRICS_LEASE: '55s' }) },
    });
    expect(55).toBeLessThan(TIMING.asyncFirstRetrySeconds);
  });

  test('architecture, memory, reserved concurrency and log level are settable', () => {
    const { template } = synth({
      architecture: 'x86_64',
      memorySize: '128',
      reservedConcurrency: '20',
      logLevel: 'debug',
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Architectures: ['x86_64'],
      MemorySize: 128,
      ReservedConcurrentExecutions: 20,
      LoggingConfig: Match.objectLike({ ApplicationLogLevel: 'DEBUG' }),
      Environment: { Variables: Match.objectLike({ RUST_LOG: 'debug' }) },
    });
  });

  test('logs to its own log group with retention', () => {
    const { template } = synth({ logRetentionDays: '90' });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 90 });
    template.hasResourceProperties('AWS::Lambda::Function', {
      LoggingConfig: Match.objectLike({ LogGroup: { Ref: logicalId(template, 'AWS::Logs::LogGroup') } }),
    });
  });
});

describe('least privilege', () => {
  const ownStatements = (template: Template) => [
    {
      Sid: 'WriteOwnLogs',
      Effect: 'Allow',
      Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      Resource: { 'Fn::GetAtt': [logicalId(template, 'AWS::Logs::LogGroup'), 'Arn'] },
    },
    {
      Sid: 'UseLedgerTable',
      Effect: 'Allow',
      Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem'],
      Resource: { 'Fn::GetAtt': [logicalId(template, 'AWS::DynamoDB::Table'), 'Arn'] },
    },
  ];

  test('direct mode: its table, its secret, its logs, and writing failed invocations to the dead-letter bucket', () => {
    const { template } = synth();
    const bucket = logicalId(template, 'AWS::S3::Bucket');
    expect(policyStatements(template)).toEqual([
      ...ownStatements(template),
      { Sid: 'ReadDataDogApiKey', Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: SECRET_ARN },
      {
        Sid: 'WriteFailedInvocations',
        Effect: 'Allow',
        Action: 's3:PutObject',
        Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket, 'Arn'] }, '/*']] },
      },
      { Sid: 'ListFailedInvocations', Effect: 'Allow', Action: 's3:ListBucket', Resource: { 'Fn::GetAtt': [bucket, 'Arn'] } },
    ]);
    template.resourceCountIs('AWS::IAM::ManagedPolicy', 0);
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } }],
      },
      ManagedPolicyArns: Match.absent(),
    });
  });

  test('the Genesys OAuth client secret is readable, and only that one, when names come from the API', () => {
    const client = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:genesys-client-AbCdEf';
    const { template } = synth({ genesysRegion: 'mypurecloud.ie', genesysCredentialsSecretArn: client, names: '{"d2c1":"Routing"}' });
    expect(policyStatements(template)).toContainEqual({
      Sid: 'ReadGenesysClient',
      Effect: 'Allow',
      Action: 'secretsmanager:GetSecretValue',
      Resource: client,
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          GENESYS_REGION: 'mypurecloud.ie',
          GENESYS_CREDENTIALS_SECRET_ARN: client,
          FLOW_METRICS_NAMES: '{"d2c1":"Routing"}',
        }),
      },
    });
    // Without the API, no statement for it and no variables.
    const plain = synth().template;
    expect(JSON.stringify(policyStatements(plain))).not.toContain('ReadGenesysClient');
    expect(JSON.stringify(plain.toJSON())).not.toContain('GENESYS_');
  });

  test('queued mode: its table, its secret, its logs, and consuming its queue', () => {
    const { template } = synth({ mode: 'queued' });
    const queues = template.findResources('AWS::SQS::Queue', { Properties: { RedrivePolicy: Match.anyValue() } });
    const eventQueue = Object.keys(queues)[0];
    expect(policyStatements(template)).toEqual([
      ...ownStatements(template),
      { Sid: 'ReadDataDogApiKey', Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: SECRET_ARN },
      {
        Effect: 'Allow',
        Action: [
          'sqs:ChangeMessageVisibility',
          'sqs:DeleteMessage',
          'sqs:GetQueueAttributes',
          'sqs:GetQueueUrl',
          'sqs:ReceiveMessage',
        ],
        Resource: { 'Fn::GetAtt': [eventQueue, 'Arn'] },
      },
    ]);
  });
});

describe('direct mode', () => {
  const { template } = synth();
  const dlq = logicalId(template, 'AWS::SQS::Queue');
  const bucket = logicalId(template, 'AWS::S3::Bucket');
  const fn = logicalId(template, 'AWS::Lambda::Function');

  test('the rule invokes the function, retries, then dead-letters', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [fn, 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 86400 },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [dlq, 'Arn'] } },
        }),
      ],
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
    });
  });

  test('failed invocations are retried, then recorded whole in the dead-letter bucket', () => {
    // A record wraps its event (up to 256 KB) in Lambda's details: it can outgrow an SQS message.
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 21600,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [bucket, 'Arn'] } } },
    });
    template.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
        PublicAccessBlockConfiguration: Match.objectLike({ BlockPublicAcls: true, RestrictPublicBuckets: true }),
        MetricsConfigurations: [{ Id: 'EntireBucket' }],
      }),
    });
  });

  test('the dead-letter queue keeps what EventBridge could not deliver 14 days, encrypted, over TLS only', () => {
    template.hasResourceProperties('AWS::SQS::Queue', { MessageRetentionPeriod: 1209600, SqsManagedSseEnabled: true });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  test('no queue and no event source mapping', () => {
    template.resourceCountIs('AWS::SQS::Queue', 1);
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 0);
  });
});

describe('queued mode', () => {
  const { template } = synth({ mode: 'queued' });
  const queues = template.findResources('AWS::SQS::Queue', { Properties: { RedrivePolicy: Match.anyValue() } });
  const eventQueue = Object.keys(queues)[0];
  const dlq = Object.keys(template.findResources('AWS::SQS::Queue')).find((id) => id !== eventQueue);

  test('the rule feeds a queue that redrives to the dead-letter queue', () => {
    expect(Object.keys(queues)).toHaveLength(1);
    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 180,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlq, 'Arn'] }, maxReceiveCount: 5 },
      SqsManagedSseEnabled: true,
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [eventQueue, 'Arn'] },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [dlq, 'Arn'] } },
        }),
      ],
    });
  });

  test('a received message stays hidden while its batch waits, runs and holds its claims', () => {
    const timeout = 300;
    const long = synth({ mode: 'queued', timeoutSeconds: String(timeout) }).template;
    const [queue] = Object.values(long.findResources('AWS::SQS::Queue', { Properties: { RedrivePolicy: Match.anyValue() } }));
    const visibility = (queue as { Properties: { VisibilityTimeout: number } }).Properties.VisibilityTimeout;
    const lease = timeout + TIMING.leaseMarginSeconds;
    expect(visibility).toBeGreaterThanOrEqual(TIMING.sqsBatchingWindowSeconds + timeout + lease);
    expect(visibility).toBeGreaterThanOrEqual(6 * timeout);
    long.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ FLOW_METRICS_LEASE: `${lease}s` }) },
    });
  });

  test('the function reads the queue in batches and reports partial failures', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [eventQueue, 'Arn'] },
      BatchSize: 10,
      MaximumBatchingWindowInSeconds: 2,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    template.resourceCountIs('AWS::Lambda::EventInvokeConfig', 0);
  });

  test('a queue age alarm joins the others', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateAgeOfOldestMessage',
      Threshold: 300,
    });
  });

  test('concurrency is capped on the event source, not reserved', () => {
    const capped = synth({ mode: 'queued', maxConcurrency: '5' }).template;
    capped.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 5 } });
    const [fn] = Object.values(capped.findResources('AWS::Lambda::Function'));
    expect((fn as { Properties: Record<string, unknown> }).Properties.ReservedConcurrentExecutions).toBeUndefined();
  });
});

describe('alarms and outputs', () => {
  /** Alarm metric names in a template. */
  const alarmMetrics = (template: Template): string[] =>
    Object.values(template.findResources('AWS::CloudWatch::Alarm'))
      .map((alarm) => (alarm as { Properties: { MetricName: string } }).Properties.MetricName)
      .sort();

  test.each([
    [
      'direct',
      [
        'ApproximateNumberOfMessagesVisible',
        'AsyncEventAge',
        'DataDogPushFailures',
        'DestinationDeliveryFailures',
        'Errors',
        'InvocationsFailedToBeSentToDlq',
        'MatchedEvents',
        'NamesUnavailable',
        'OpeningHours',
        'PutRequests',
        'Throttles',
      ],
    ],
    [
      'queued',
      [
        'ApproximateAgeOfOldestMessage',
        'ApproximateNumberOfMessagesVisible',
        'DataDogPushFailures',
        'Errors',
        'InvocationsFailedToBeSentToDlq',
        'MatchedEvents',
        'NamesUnavailable',
        'OpeningHours',
        'Throttles',
      ],
    ],
  ])('%s mode alarms on every way an event can disappear or stall', (mode, expected) => {
    const { template } = synth({ mode });
    expect(alarmMetrics(template)).toEqual(expected);
  });

  test('the rule\'s metrics and its output name the rule, not CloudFormation\'s <bus>|<rule> Ref of a rule on a custom bus', () => {
    const { template, stack } = synth();
    const ruleId = stack.getLogicalId(stack.rule.node.defaultChild as CfnElement);
    const ruleName = { 'Fn::Select': [1, { 'Fn::Split': ['|', { Ref: ruleId }] }] };
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'MatchedEvents',
      Dimensions: Match.arrayWith([{ Name: 'RuleName', Value: ruleName }]),
    });
    template.hasOutput('RuleName', { Value: ruleName });
  });

  test('failures alarm when sustained, losses at once', () => {
    const { template } = synth();
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Errors',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 3,
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'DestinationDeliveryFailures',
      EvaluationPeriods: 1,
      Threshold: 0,
    });
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '?"push failed" ?"self-metrics not sent"',
      MetricTransformations: [Match.objectLike({ MetricNamespace: 'GenesysFlowMetrics', MetricName: 'DataDogPushFailures' })],
    });
  });

  test('the keys DataDog accepted are summed from the invocation lines the function really writes', () => {
    const { template } = synth();
    const filters = Object.values(template.findResources('AWS::Logs::MetricFilter')).map(
      (filter) =>
        (filter as { Properties: { FilterPattern: string; LogGroupName: unknown; MetricTransformations: Array<Record<string, unknown>> } })
          .Properties,
    );
    const delivered = filters.filter((filter) => filter.MetricTransformations[0].MetricName === 'KeysDelivered');
    expect(delivered).toHaveLength(1);
    const [filter] = delivered;
    const [transformation] = filter.MetricTransformations;
    expect(filter.FilterPattern).toBe('{ $.fields.message = "invocation" }');
    expect(transformation).toEqual({ MetricNamespace: 'GenesysFlowMetrics', MetricName: 'KeysDelivered', MetricValue: '$.fields.keys_counted' });
    expect(filter.LogGroupName).toEqual({ Ref: logicalId(template, 'AWS::Logs::LogGroup') });
    // The line as the real binary writes it (tests/lambda_cold_start.rs holds it to this file).
    const line = JSON.parse(fs.readFileSync(INVOCATION_LINE, 'utf8'));
    expect(matchesJsonPattern(filter.FilterPattern, line)).toBe(true);
    expect(selectJson(line, transformation.MetricValue as string)).toBe(line.fields.keys_counted);
    const counted = { ...line, fields: { ...line.fields, keys_counted: 3 } };
    expect(selectJson(counted, transformation.MetricValue as string)).toBe(3);
    // The function's other lines count nothing.
    const failure = { ...line, level: 'ERROR', fields: { message: 'push failed', error: 'DataDog answered 403 Forbidden' } };
    expect(matchesJsonPattern(filter.FilterPattern, failure)).toBe(false);
  });

  test('names that cannot be fetched are counted from the function\'s log and alarmed at once', () => {
    const { template } = synth();
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '"names unavailable"',
      MetricTransformations: [Match.objectLike({ MetricNamespace: 'GenesysFlowMetrics', MetricName: 'NamesUnavailable' })],
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'NamesUnavailable', EvaluationPeriods: 1, Threshold: 0 });
  });

  test('requests DataDog may have counted twice are counted from the function\'s log, with no alarm', () => {
    const { template } = synth();
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '"possibly doubled"',
      MetricTransformations: [
        Match.objectLike({ MetricNamespace: 'GenesysFlowMetrics', MetricName: 'PossiblyDoubled', MetricValue: '1', DefaultValue: 0 }),
      ],
    });
    expect(alarmMetrics(template)).not.toContain('PossiblyDoubled');
  });

  test('an alarm email gets a topic that every alarm notifies, but the two halves of the no-events alarm', () => {
    const { template } = synth({ alarmEmail: 'ivr-team@example.com' });
    const topic = logicalId(template, 'AWS::SNS::Topic');
    template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ivr-team@example.com' });
    const actions = (type: string) =>
      Object.entries(template.findResources(type)).map(([id, alarm]) => [id.replace(/[0-9A-F]{8}$/, ''), (alarm as { Properties: { AlarmActions?: unknown } }).Properties.AlarmActions]);
    const metricAlarms = actions('AWS::CloudWatch::Alarm');
    expect(metricAlarms).toHaveLength(11);
    for (const [id, alarmActions] of metricAlarms) {
      expect([id, alarmActions]).toEqual([id, ['CentreOpenAlarm', 'SilenceAlarm'].includes(id as string) ? undefined : [{ Ref: topic }]]);
    }
    expect(actions('AWS::CloudWatch::CompositeAlarm')).toEqual([['NoEventsAlarm', [{ Ref: topic }]]]);
  });

  test('outputs name everything an operator looks for, and whether it is paused', () => {
    const queued = synth({ mode: 'queued' }).template.findOutputs('*');
    expect(Object.keys(queued).sort()).toEqual(
      ['ApiKeySecretArn', 'DeadLetterQueueUrl', 'EventBusName', 'EventQueueUrl', 'FunctionName', 'LogGroupName', 'OpeningHours', 'Paused', 'RuleName', 'TableName'].sort(),
    );
    expect(queued.Paused.Value).toBe('no');
    const direct = synth().template.findOutputs('*');
    expect(Object.keys(direct)).toContain('DeadLetterBucketName');
    expect(Object.keys(direct)).not.toContain('EventQueueUrl');
  });

  test('outputs give flow-metrics datadog apply the opening hours and the notification handles', () => {
    const outputs = synth({
      openingHours: 'Mon-Fri 08:00-18:00; Sat 09:00-13:00',
      timeZone: 'Europe/Dublin',
      datadogNotify: '@slack-contact-centre, @ops@example.com',
    }).template.findOutputs('*');
    expect(JSON.parse(outputs.OpeningHours.Value)).toEqual({
      text: 'Mon-Fri 08:00-18:00; Sat 09:00-13:00',
      timeZone: 'Europe/Dublin',
      windows: [
        { days: ['MON', 'TUE', 'WED', 'THU', 'FRI'], start: 480, end: 1080 },
        { days: ['SAT'], start: 540, end: 780 },
      ],
    });
    expect(outputs.DataDogNotify.Value).toBe('@slack-contact-centre @ops@example.com');
    const always = synth({ openingHours: 'always' }).template.findOutputs('*');
    expect(JSON.parse(always.OpeningHours.Value)).toEqual({ text: 'always', timeZone: 'Europe/Dublin', windows: null });
    expect(always.DataDogNotify).toBeUndefined();
    expect(() => synth({ datadogNotify: 'slack-contact-centre' })).toThrow(/datadogNotify.*not a DataDog notification handle/);
  });

  test('the key\'s secret is the one given; the stack creates none', () => {
    const { template } = synth();
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ DD_API_KEY_SECRET_ARN: SECRET_ARN }) },
    });
  });

  test('.elapsed can be turned off', () => {
    const variables = (template: Template) =>
      (Object.values(template.findResources('AWS::Lambda::Function'))[0] as { Properties: { Environment: { Variables: Record<string, unknown> } } })
        .Properties.Environment.Variables;
    expect(variables(synth().template).FLOW_METRICS_ELAPSED).toBeUndefined();
    expect(variables(synth({ elapsedMetrics: 'false' }).template).FLOW_METRICS_ELAPSED).toBe('off');
  });
});

const GENESYS_CLIENT = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:genesys-client-AbCdEf';
const RECONCILING = { genesysRegion: 'mypurecloud.ie', genesysCredentialsSecretArn: GENESYS_CLIENT, reconcileSchedule: 'true' };

describe('the scheduled reconciliation', () => {
  test('is off by default: no second function, no schedule', () => {
    const { stack, template } = synth({ genesysRegion: 'mypurecloud.ie', genesysCredentialsSecretArn: GENESYS_CLIENT });
    expect(stack.reconcileFunction).toBeUndefined();
    template.resourceCountIs('AWS::Lambda::Function', 1);
    expect(JSON.stringify(template.toJSON())).not.toContain('FLOW_METRICS_RUN');
  });

  test('needs the Genesys OAuth client', () => {
    expect(() => synth({ reconcileSchedule: 'true' })).toThrow(/setting reconcileSchedule: .*genesysCredentialsSecretArn/);
  });

  test('on: the same code in its reconcile mode, at a quarter past each hour', () => {
    const { stack, template } = synth(RECONCILING);
    const reconcile = stack.getLogicalId(stack.reconcileFunction?.node.defaultChild as CfnElement);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Handler: 'bootstrap',
      Timeout: 900,
      Environment: {
        Variables: Match.objectLike({
          FLOW_METRICS_RUN: 'reconcile',
          GENESYS_REGION: 'mypurecloud.ie',
          GENESYS_CREDENTIALS_SECRET_ARN: GENESYS_CLIENT,
          DD_API_KEY_SECRET_ARN: SECRET_ARN,
        }),
      },
    });
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(15 * * * ? *)',
      State: 'ENABLED',
      Target: Match.objectLike({ Arn: { 'Fn::GetAtt': [reconcile, 'Arn'] }, Input: '{"time":"<aws.scheduler.scheduled-time>"}' }),
    });
  });

  test('paused: the schedule is off, since the events held back would show as lost coverage', () => {
    const { template } = synth({ ...RECONCILING, paused: 'true' });
    template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'cron(15 * * * ? *)', State: 'DISABLED' });
  });

  test('a failed run alarms, since it sends no coverage for the monitor to judge', () => {
    const { stack, template } = synth({ ...RECONCILING, alarmEmail: 'a@example.com' });
    const reconcile = stack.getLogicalId(stack.reconcileFunction?.node.defaultChild as CfnElement);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Errors',
      Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: reconcile } }],
      Period: 3600,
      Threshold: 0,
      AlarmActions: Match.anyValue(),
    });
    expect(Object.keys(template.findOutputs('*'))).toContain('ReconcileLogGroupName');
  });

  test('least privilege: it scans the table, reads the two secrets and writes its own logs, nothing else', () => {
    const { template } = synth(RECONCILING);
    const policies = Object.entries(template.findResources('AWS::IAM::Policy')).filter(([id]) => id.startsWith('ReconcileRole'));
    expect(policies).toHaveLength(1);
    const statements = (policies[0][1] as { Properties: { PolicyDocument: { Statement: unknown[] } } }).Properties.PolicyDocument.Statement;
    const ownLogs = Object.keys(template.findResources('AWS::Logs::LogGroup')).find((id) => id.startsWith('ReconcileLogs'));
    expect(statements).toEqual([
      {
        Sid: 'WriteOwnLogs',
        Effect: 'Allow',
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: { 'Fn::GetAtt': [ownLogs, 'Arn'] },
      },
      { Sid: 'ScanLedgerTable', Effect: 'Allow', Action: 'dynamodb:Scan', Resource: { 'Fn::GetAtt': [logicalId(template, 'AWS::DynamoDB::Table'), 'Arn'] } },
      { Sid: 'ReadSecrets', Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: [SECRET_ARN, GENESYS_CLIENT] },
    ]);
  });
});

describe('cdk-nag AwsSolutions', () => {
  test.each([
    ['direct', {}],
    ['queued', { mode: 'queued' }],
    ['with alarms', { alarmEmail: 'a@example.com' }],
    ['queued with alarms', { mode: 'queued', alarmEmail: 'a@example.com' }],
    ['paused, open always', { paused: 'true', openingHours: 'always' }],
    ['queued, paused', { mode: 'queued', paused: 'true' }],
    ['reconciling each hour', RECONCILING],
  ])('%s: no unacknowledged finding', (_name, context) => {
    const { stack } = synth(context as Record<string, string>);
    expect(awsSolutionsFindings(stack).map(describeFinding)).toEqual([]);
  });
});
