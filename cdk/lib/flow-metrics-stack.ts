/**
 * The whole pipeline: the Genesys partner event bus and its rule, the per-key ledger table, the
 * Rust Lambda (direct, or behind an SQS queue), a dead-letter queue so nothing is dropped, least
 * privilege IAM, alarms and outputs.
 */
import * as path from 'path';
import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { ledgerSchema } from './ledger-schema';
import { LOG_MARKERS } from './log-markers';
import { ATTRIBUTES_DETAIL_TYPE, FLOW_OUTCOME_DETAIL_TYPE, FlowMetricsSettings } from './settings';
import { TIMING, leaseSeconds, visibilityTimeoutSeconds } from './timing';

export interface FlowMetricsStackProps extends StackProps {
  readonly settings: FlowMetricsSettings;
  /**
   * A prebuilt function package (a directory holding `bootstrap`). Without it the function is
   * built from the Rust crate by cargo-lambda at synth time.
   */
  readonly prebuiltCode?: lambda.Code;
}

/** The binary the Lambda runs (Cargo.toml's `[[bin]]`). */
export const BINARY_NAME = 'flow-metrics-lambda';

/** Where the Rust crate lives, relative to this file. */
const MANIFEST = path.join(__dirname, '..', '..', 'Cargo.toml');

export class FlowMetricsStack extends Stack {
  readonly table: dynamodb.Table;
  readonly rule: events.Rule;
  readonly function: lambda.Function;
  readonly deadLetterQueue: sqs.Queue;
  readonly eventQueue?: sqs.Queue;

  constructor(scope: Construct, id: string, props: FlowMetricsStackProps) {
    super(scope, id, props);
    const settings = props.settings;
    const schema = ledgerSchema();

    // The partner bus: created here (associating the source), or one already associated.
    const bus: events.IEventBus = settings.existingBus
      ? events.EventBus.fromEventBusName(this, 'GenesysEventBus', settings.existingBus)
      : new events.EventBus(this, 'GenesysEventBus', { eventSourceName: settings.eventSourceName });
    // Genesys sends as soon as the rule is on: it stays off until a real DataDog key is
    // configured (an existing secret), or every event would fail and be dead-lettered.
    // One rule for both topics, so that its alarms watch everything the function is sent.
    this.rule = new events.Rule(this, 'AttributesRule', {
      description: settings.flowOutcomes
        ? 'Genesys conversation attribute updates and flow outcomes from this organisation only'
        : 'Genesys conversation attribute updates from this organisation only',
      eventBus: bus,
      eventPattern: {
        source: [settings.eventSourceName],
        detailType: settings.flowOutcomes ? [ATTRIBUTES_DETAIL_TYPE, FLOW_OUTCOME_DETAIL_TYPE] : [ATTRIBUTES_DETAIL_TYPE],
      },
      enabled: settings.apiKeySecretArn !== undefined,
    });
    const rule = this.rule;

    this.table = new dynamodb.Table(this, 'LedgerTable', {
      partitionKey: { name: schema.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: schema.sortKey, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: schema.timeToLive,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const secret = settings.apiKeySecretArn
      ? secretsmanager.Secret.fromSecretCompleteArn(this, 'DataDogApiKey', settings.apiKeySecretArn)
      : new secretsmanager.Secret(this, 'DataDogApiKey', {
          description: 'DataDog API key for genesys-flow-metrics: replace the generated value with your key',
          generateSecretString: { excludePunctuation: true, passwordLength: 32 },
          removalPolicy: RemovalPolicy.RETAIN,
        });

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // Its events are the only copy of what failed: a teardown must not take them.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // If the bus cannot be created (the source is associated already, another region, an
    // inactive integration), nothing retained is left behind: the retained resources come after.
    if (bus instanceof events.EventBus) {
      this.table.node.addDependency(bus);
      secret.node.addDependency(bus);
      this.deadLetterQueue.node.addDependency(bus);
    }

    const logGroup = new logs.LogGroup(this, 'FunctionLogs', {
      retention: settings.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const role = new iam.Role(this, 'FunctionRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'genesys-flow-metrics: its table, its secrets, its logs',
    });
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'UseLedgerTable',
        // GetItem: what a failed conditional put met, when its answer does not carry it.
        actions: ['dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
        resources: [this.table.tableArn],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'ReadDataDogApiKey',
        actions: ['secretsmanager:GetSecretValue'],
        resources: [secret.secretArn],
      }),
    );
    if (settings.genesysCredentialsSecretArn !== undefined) {
      role.addToPolicy(
        new iam.PolicyStatement({
          sid: 'ReadGenesysClient',
          actions: ['secretsmanager:GetSecretValue'],
          resources: [settings.genesysCredentialsSecretArn],
        }),
      );
    }

    const timeout = Duration.seconds(settings.timeoutSeconds);
    const functionOptions: lambda.FunctionOptions = {
      description: 'Counts Genesys flow metric attributes, milestones and outcomes once and sends them to DataDog',
      role,
      logGroup,
      architecture: settings.architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
      memorySize: settings.memorySize,
      timeout,
      reservedConcurrentExecutions: settings.mode === 'direct' ? settings.reservedConcurrency : undefined,
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: applicationLogLevel(settings.logLevel),
      systemLogLevelV2: lambda.SystemLogLevel.WARN,
      environment: {
        FLOW_METRICS_TABLE: this.table.tableName,
        DD_SITE: settings.datadogSite,
        DD_API_KEY_SECRET_ARN: secret.secretArn,
        FLOW_METRICS_METRIC: settings.metricName,
        FLOW_METRICS_RETENTION: `${settings.retentionDays}d`,
        // A claim outlives the invocation that holds it, and ends before Lambda's first retry.
        FLOW_METRICS_LEASE: `${leaseSeconds(settings.timeoutSeconds)}s`,
        RUST_LOG: settings.logLevel,
        ...(settings.tags ? { DD_TAGS: settings.tags } : {}),
        ...(settings.genesysRegion && settings.genesysCredentialsSecretArn
          ? { GENESYS_REGION: settings.genesysRegion, GENESYS_CREDENTIALS_SECRET_ARN: settings.genesysCredentialsSecretArn }
          : {}),
        ...(settings.names ? { FLOW_METRICS_NAMES: JSON.stringify(settings.names) } : {}),
      },
    };
    this.function = props.prebuiltCode
      ? new lambda.Function(this, 'Function', {
          ...functionOptions,
          runtime: lambda.Runtime.PROVIDED_AL2023,
          handler: 'bootstrap',
          code: props.prebuiltCode,
        })
      : new RustFunction(this, 'Function', {
          ...functionOptions,
          manifestPath: MANIFEST,
          binaryName: BINARY_NAME,
          bundling: { architecture: functionOptions.architecture },
        });

    if (settings.mode === 'direct') {
      rule.addTarget(
        new targets.LambdaFunction(this.function, {
          deadLetterQueue: this.deadLetterQueue,
          retryAttempts: 8,
          maxEventAge: Duration.hours(24),
        }),
      );
      this.function.configureAsyncInvoke({
        retryAttempts: 2,
        maxEventAge: Duration.hours(6),
        onFailure: new destinations.SqsDestination(this.deadLetterQueue),
      });
    } else {
      this.eventQueue = new sqs.Queue(this, 'EventQueue', {
        visibilityTimeout: Duration.seconds(visibilityTimeoutSeconds(settings.timeoutSeconds)),
        retentionPeriod: Duration.days(4),
        deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: 5 },
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
      });
      rule.addTarget(
        new targets.SqsQueue(this.eventQueue, {
          deadLetterQueue: this.deadLetterQueue,
          retryAttempts: 8,
          maxEventAge: Duration.hours(24),
        }),
      );
      this.function.addEventSource(
        new SqsEventSource(this.eventQueue, {
          batchSize: 10,
          maxBatchingWindow: Duration.seconds(TIMING.sqsBatchingWindowSeconds),
          reportBatchItemFailures: true,
          maxConcurrency: settings.maxConcurrency,
        }),
      );
    }

    this.addAlarms(settings, bus, logGroup);
    this.addOutputs(secret);
    this.acknowledgeReviewedFindings();
  }

  /**
   * An alarm for every way an event can disappear or stall, each named in the README's runbooks:
   * failures are alarmed when sustained, losses at once.
   */
  private addAlarms(settings: FlowMetricsSettings, bus: events.IEventBus, logGroup: logs.ILogGroup): void {
    const period = Duration.minutes(5);
    const alarm = (
      id: string,
      description: string,
      metric: cloudwatch.IMetric,
      options: { threshold?: number; sustained?: boolean } = {},
    ) =>
      new cloudwatch.Alarm(this, id, {
        alarmDescription: description,
        metric,
        threshold: options.threshold ?? 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: options.sustained ? 3 : 1,
        datapointsToAlarm: options.sustained ? 3 : 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    const ruleMetric = (metricName: string, statistic: string, metricPeriod: Duration) =>
      new cloudwatch.Metric({
        namespace: 'AWS/Events',
        metricName,
        dimensionsMap: { EventBusName: bus.eventBusName, RuleName: this.rule.ruleName },
        statistic,
        period: metricPeriod,
      });
    // The function logs these lines when DataDog refuses or cannot be reached: counted here, in
    // CloudWatch, since the self-metrics that would tell DataDog fail along with the points.
    const pushFailures = new logs.MetricFilter(this, 'DataDogPushFailures', {
      logGroup,
      filterPattern: logs.FilterPattern.anyTerm(...LOG_MARKERS.dataDogPushFailures),
      metricNamespace: 'GenesysFlowMetrics',
      metricName: 'DataDogPushFailures',
      metricValue: '1',
      defaultValue: 0,
    });
    const alarms = [
      alarm(
        'FunctionErrorsAlarm',
        'The function has failed for 15 minutes: events are being retried, then dead-lettered',
        this.function.metricErrors({ period, statistic: 'Sum' }),
        { sustained: true },
      ),
      alarm(
        'FunctionThrottlesAlarm',
        'The function has been throttled for 15 minutes: raise its concurrency',
        this.function.metricThrottles({ period, statistic: 'Sum' }),
        { sustained: true },
      ),
      alarm(
        'DataDogPushFailuresAlarm',
        'Pushes to DataDog have failed for 15 minutes: check the API key, the site and DataDog status',
        pushFailures.metric({ period, statistic: 'Sum' }),
        { sustained: true },
      ),
      alarm(
        'DeadLetterQueueAlarm',
        'Events reached the dead-letter queue: inspect and redrive them',
        this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }),
      ),
      alarm(
        'DeadLetterSendFailuresAlarm',
        'EventBridge could neither deliver events nor put them in the dead-letter queue: they are lost',
        ruleMetric('InvocationsFailedToBeSentToDlq', 'Sum', period),
      ),
    ];
    if (settings.apiKeySecretArn !== undefined) {
      // Missing data is breaching: an integration disabled or a topic changed sends nothing.
      alarms.push(
        new cloudwatch.Alarm(this, 'NoEventsAlarm', {
          alarmDescription: `The rule matched no Genesys event for ${settings.noEventsAlarmHours} hour(s): is the integration active, and its topic subscribed?`,
          metric: ruleMetric('MatchedEvents', 'Sum', Duration.hours(1)),
          threshold: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
          evaluationPeriods: settings.noEventsAlarmHours,
          treatMissingData: cloudwatch.TreatMissingData.BREACHING,
        }),
      );
    }
    if (settings.mode === 'direct') {
      alarms.push(
        alarm(
          'DestinationDeliveryFailuresAlarm',
          'Failed invocations could not be sent to the dead-letter queue: those events are lost',
          new cloudwatch.Metric({
            namespace: 'AWS/Lambda',
            metricName: 'DestinationDeliveryFailures',
            dimensionsMap: { FunctionName: this.function.functionName },
            statistic: 'Sum',
            period,
          }),
        ),
        alarm(
          'AsyncEventAgeAlarm',
          'Events wait more than five minutes in Lambda\'s queue: retries or throttling are delaying them',
          new cloudwatch.Metric({
            namespace: 'AWS/Lambda',
            metricName: 'AsyncEventAge',
            dimensionsMap: { FunctionName: this.function.functionName },
            statistic: 'Maximum',
            period,
          }),
          { threshold: 5 * 60 * 1000 },
        ),
      );
    }
    if (this.eventQueue) {
      alarms.push(
        alarm(
          'EventQueueAgeAlarm',
          'Events wait in the queue for more than five minutes',
          this.eventQueue.metricApproximateAgeOfOldestMessage({ period, statistic: 'Maximum' }),
          { threshold: 300 },
        ),
      );
    }
    if (settings.alarmEmail) {
      const topic = new sns.Topic(this, 'AlarmTopic', { enforceSSL: true });
      topic.addSubscription(new subscriptions.EmailSubscription(settings.alarmEmail));
      alarms.forEach((each) => each.addAlarmAction(new cloudwatchActions.SnsAction(topic)));
      Validations.of(topic).acknowledge({
        id: 'AwsSolutions-SNS2',
        reason: 'Alarm notifications carry no data; CloudWatch cannot publish to a topic under the AWS-managed SNS key.',
      });
    }
  }

  private addOutputs(secret: secretsmanager.ISecret): void {
    new CfnOutput(this, 'TableName', { value: this.table.tableName, description: 'The ledger table (for flow-metrics audit)' });
    new CfnOutput(this, 'FunctionName', { value: this.function.functionName });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: this.deadLetterQueue.queueUrl });
    if (this.eventQueue) new CfnOutput(this, 'EventQueueUrl', { value: this.eventQueue.queueUrl });
    new CfnOutput(this, 'ApiKeySecretArn', { value: secret.secretArn });
    new CfnOutput(this, 'SetApiKey', {
      description: 'Store the DataDog API key, then restart the function so it reads it',
      value: `aws secretsmanager put-secret-value --secret-id ${secret.secretArn} --secret-string "$DD_API_KEY" && aws lambda update-function-configuration --function-name ${this.function.functionName} --description "DataDog key updated"`,
    });
  }

  /** cdk-nag findings reviewed and accepted, each with its reason. */
  private acknowledgeReviewedFindings(): void {
    Validations.of(this.deadLetterQueue).acknowledge({ id: 'AwsSolutions-SQS3', reason: 'This is the dead-letter queue.' });
    const secret = this.node.tryFindChild('DataDogApiKey');
    if (secret instanceof secretsmanager.Secret) {
      Validations.of(secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason: 'A DataDog API key is rotated in DataDog, then stored here by hand.',
      });
    }
  }
}

function applicationLogLevel(level: FlowMetricsSettings['logLevel']): lambda.ApplicationLogLevel {
  const levels: Record<FlowMetricsSettings['logLevel'], lambda.ApplicationLogLevel> = {
    error: lambda.ApplicationLogLevel.ERROR,
    warn: lambda.ApplicationLogLevel.WARN,
    info: lambda.ApplicationLogLevel.INFO,
    debug: lambda.ApplicationLogLevel.DEBUG,
    trace: lambda.ApplicationLogLevel.TRACE,
  };
  return levels[level];
}
