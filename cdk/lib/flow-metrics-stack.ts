/**
 * The whole pipeline: the Genesys partner event bus and its rule, the per-key ledger table, the
 * Rust Lambda (direct, or behind an SQS queue), dead letters that keep every failed event whole,
 * a pause that loses nothing, least privilege IAM, alarms that know the centre's opening hours,
 * and outputs.
 */
import * as path from 'path';
import { Annotations, CfnElement, CfnOutput, Duration, Fn, RemovalPolicy, Stack, StackProps, TimeZone, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { ledgerSchema } from './ledger-schema';
import { LOG_MARKERS } from './log-markers';
import { openingHeartbeatCrons, OPENING_STEP_MINUTES } from './opening-hours';
import { ATTRIBUTES_DETAIL_TYPE, FLOW_OUTCOME_DETAIL_TYPE, FlowMetricsSettings, MAX_KEY_AGE_DAYS } from './settings';
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

/** Where the stack's own metrics go (push failures, names unavailable, keys delivered, opening hours). */
export const METRICS_NAMESPACE = 'GenesysFlowMetrics';

/**
 * The keys DataDog accepted: the function logs one `invocation` line per invocation (JSON, as
 * tests/fixtures/invocation-line.json shows it) whose `keys_counted` is the keys it delivered; the
 * stack sums them as this metric, which `flow-metrics doctor` reads.
 */
export const KEYS_DELIVERED = {
  metricName: 'KeysDelivered',
  filterPattern: logs.FilterPattern.stringValue('$.fields.message', '=', 'invocation'),
  metricValue: '$.fields.keys_counted',
};

/** SQS's longest retention: how long a pause in queued mode can last. */
const QUEUE_RETENTION = Duration.days(14);

export class FlowMetricsStack extends Stack {
  readonly table: dynamodb.Table;
  readonly bus: events.IEventBus;
  readonly rule: events.Rule;
  readonly function: lambda.Function;
  readonly logGroup: logs.LogGroup;
  /** What EventBridge could not deliver, and (queued mode) what the function failed. */
  readonly deadLetterQueue: sqs.Queue;
  /** Direct mode: Lambda's record of each failed invocation, with its event whole, whatever its
   * size (a record can outgrow an SQS message), and every event that arrives while paused. */
  readonly deadLetterBucket?: s3.Bucket;
  readonly eventQueue?: sqs.Queue;
  /** `reconcileSchedule`: the hourly reconciliation against Genesys's own analytics. */
  readonly reconcileFunction?: lambda.Function;

  constructor(scope: Construct, id: string, props: FlowMetricsStackProps) {
    super(scope, id, props);
    const settings = props.settings;
    const schema = ledgerSchema();

    // The partner bus: created here (associating the source), or one already associated.
    const bus: events.IEventBus = (this.bus = settings.existingBus
      ? events.EventBus.fromEventBusName(this, 'GenesysEventBus', settings.existingBus)
      : new events.EventBus(this, 'GenesysEventBus', { eventSourceName: settings.eventSourceName }));
    // Always on: a pause stops the function, not the rule, since the bus drops an event that no
    // enabled rule matches. One rule for both topics, so that its alarms watch everything.
    this.rule = new events.Rule(this, 'AttributesRule', {
      description: settings.flowOutcomes
        ? 'Genesys conversation attribute updates and flow outcomes from this organisation only'
        : 'Genesys conversation attribute updates from this organisation only',
      eventBus: bus,
      eventPattern: {
        source: [settings.eventSourceName],
        detailType: settings.flowOutcomes ? [ATTRIBUTES_DETAIL_TYPE, FLOW_OUTCOME_DETAIL_TYPE] : [ATTRIBUTES_DETAIL_TYPE],
      },
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

    const secret = secretsmanager.Secret.fromSecretCompleteArn(this, 'DataDogApiKey', settings.apiKeySecretArn);

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      retentionPeriod: QUEUE_RETENTION,
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // Its events are the only copy of what failed: a teardown must not take them.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // If the bus cannot be created (the source is associated already, another region, an
    // inactive integration), nothing retained is left behind: the retained resources come after.
    if (settings.mode === 'direct') {
      this.deadLetterBucket = new s3.Bucket(this, 'DeadLetterBucket', {
        encryption: s3.BucketEncryption.S3_MANAGED,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        enforceSSL: true,
        // Like the queue, its records are the only copy of what failed.
        removalPolicy: RemovalPolicy.RETAIN,
        // Request metrics: the alarm on records arriving.
        metrics: [{ id: 'EntireBucket' }],
      });
    }
    if (bus instanceof events.EventBus) {
      this.table.node.addDependency(bus);
      this.deadLetterQueue.node.addDependency(bus);
      this.deadLetterBucket?.node.addDependency(bus);
    }

    const { logGroup, role } = this.logsAndRole('Function', settings, 'genesys-flow-metrics: its table, its secrets, its logs');
    this.logGroup = logGroup;
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
      // Paused in direct mode: Lambda sends each event straight to the on-failure destination.
      reservedConcurrentExecutions: settings.mode === 'direct' ? (settings.paused ? 0 : settings.reservedConcurrency) : undefined,
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
        ...(settings.elapsedMetrics ? {} : { FLOW_METRICS_ELAPSED: 'off' }),
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
        onFailure: new FailedInvocationsBucket(this.deadLetterBucket as s3.Bucket),
      });
    } else {
      this.eventQueue = new sqs.Queue(this, 'EventQueue', {
        visibilityTimeout: Duration.seconds(visibilityTimeoutSeconds(settings.timeoutSeconds)),
        // The longest SQS allows: it is how long a pause can last.
        retentionPeriod: QUEUE_RETENTION,
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
          // Paused: the queue keeps the events until the function reads it again.
          enabled: !settings.paused,
        }),
      );
    }

    if (settings.reconcileSchedule) {
      this.reconcileFunction = this.addScheduledReconcile(settings, functionOptions, secret, props.prebuiltCode);
    }
    this.addAlarms(settings, bus, logGroup);
    this.addOutputs(settings, secret);
    this.acknowledgeReviewedFindings();
    if (settings.paused) {
      Annotations.of(this).addWarningV2(
        'flow-metrics:paused',
        `PAUSED: events are kept, not counted (${pauseHolder(settings)}). Resume with "paused": false in cdk/settings.json and npx cdk deploy` +
          (settings.mode === 'direct' ? ', then flow-metrics drain --bucket <DeadLetterBucketName>' : ''),
      );
    }
  }

  /**
   * The scheduled reconciliation: the function's own code in its reconcile mode
   * (`FLOW_METRICS_RUN=reconcile`), invoked at a quarter past each hour (Genesys's analytics
   * have caught up by then) for the hour before. It sends each flow's coverage to DataDog, where
   * datadog/monitors.json watches it. Its role may scan the table (nothing else of it), read
   * the DataDog key and the Genesys client, and write its own logs.
   */
  private addScheduledReconcile(
    settings: FlowMetricsSettings,
    functionOptions: lambda.FunctionOptions,
    secret: secretsmanager.ISecret,
    prebuiltCode: lambda.Code | undefined,
  ): lambda.Function {
    const { logGroup, role } = this.logsAndRole(
      'Reconcile',
      settings,
      'genesys-flow-metrics reconcile: scans its table, reads its secrets, writes its logs',
    );
    role.addToPolicy(
      new iam.PolicyStatement({ sid: 'ScanLedgerTable', actions: ['dynamodb:Scan'], resources: [this.table.tableArn] }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'ReadSecrets',
        actions: ['secretsmanager:GetSecretValue'],
        resources: [secret.secretArn, settings.genesysCredentialsSecretArn as string],
      }),
    );
    const options: lambda.FunctionOptions = {
      description: "Reconciles the previous hour's keys with Genesys's own analytics and sends each flow's coverage to DataDog",
      role,
      logGroup,
      architecture: functionOptions.architecture,
      memorySize: 256,
      // A conversation details job may take minutes to be fulfilled.
      timeout: Duration.minutes(15),
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: applicationLogLevel(settings.logLevel),
      systemLogLevelV2: lambda.SystemLogLevel.WARN,
      environment: {
        FLOW_METRICS_RUN: 'reconcile',
        FLOW_METRICS_TABLE: this.table.tableName,
        DD_SITE: settings.datadogSite,
        DD_API_KEY_SECRET_ARN: secret.secretArn,
        RUST_LOG: settings.logLevel,
        ...(settings.tags ? { DD_TAGS: settings.tags } : {}),
        GENESYS_REGION: settings.genesysRegion as string,
        GENESYS_CREDENTIALS_SECRET_ARN: settings.genesysCredentialsSecretArn as string,
      },
    };
    const reconcile = prebuiltCode
      ? new lambda.Function(this, 'ReconcileFunction', {
          ...options,
          runtime: lambda.Runtime.PROVIDED_AL2023,
          handler: 'bootstrap',
          code: prebuiltCode,
        })
      : new RustFunction(this, 'ReconcileFunction', {
          ...options,
          manifestPath: MANIFEST,
          binaryName: BINARY_NAME,
          bundling: { architecture: options.architecture },
        });
    const scheduleRole = new iam.Role(this, 'ReconcileScheduleRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'),
      description: 'genesys-flow-metrics: invokes the reconciliation each hour',
    });
    new scheduler.Schedule(this, 'ReconcileSchedule', {
      description: 'genesys-flow-metrics: reconcile the previous hour with Genesys analytics',
      schedule: scheduler.ScheduleExpression.cron({ minute: '15' }),
      // Paused, events are held back on purpose: coverage would fall and alert for nothing.
      enabled: !settings.paused,
      target: new schedulerTargets.LambdaInvoke(reconcile, {
        role: scheduleRole,
        retryAttempts: 0,
        // The hour before the scheduled time, however late the invocation.
        input: scheduler.ScheduleTargetInput.fromObject({ time: scheduler.ContextAttribute.scheduledTime }),
      }),
    });
    const reconcileId = this.getLogicalId(reconcile.node.defaultChild as CfnElement);
    Validations.of(scheduleRole).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${reconcileId}.Arn>:*]`,
      reason: 'The scheduler target\'s grant: lambda:InvokeFunction on the reconciliation function and its versions, nothing else.',
    });
    return reconcile;
  }

  /**
   * An alarm for every way an event can disappear or stall, each named in the README's runbooks:
   * failures are alarmed when sustained, losses at once, silence only while the centre is open,
   * and a pause as soon as events wait behind it.
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
        dimensionsMap: { EventBusName: bus.eventBusName, RuleName: this.ruleNameOnBus() },
        statistic,
        period: metricPeriod,
      });
    // The function logs these lines: counted here, in CloudWatch, since the self-metrics that
    // would tell DataDog fail along with the points when DataDog refuses them.
    const logCount = (id: string, words: string[]) =>
      new logs.MetricFilter(this, id, {
        logGroup,
        filterPattern: logs.FilterPattern.anyTerm(...words),
        metricNamespace: METRICS_NAMESPACE,
        metricName: id,
        metricValue: '1',
        defaultValue: 0,
      }).metric({ period, statistic: 'Sum' });
    // Keys delivered by a push that may have counted them twice (one log line per key). A
    // metric to read beside the self-metric, not an alarm: nothing is lost, and no one has
    // anything to do about it.
    logCount('PossiblyDoubled', LOG_MARKERS.possiblyDoubled);
    new logs.MetricFilter(this, KEYS_DELIVERED.metricName, {
      logGroup,
      filterPattern: KEYS_DELIVERED.filterPattern,
      metricNamespace: METRICS_NAMESPACE,
      metricName: KEYS_DELIVERED.metricName,
      metricValue: KEYS_DELIVERED.metricValue,
    });
    const resume = `set "paused": false in cdk/settings.json and npx cdk deploy`;
    const alarms: cloudwatch.AlarmBase[] = [
      alarm(
        'FunctionErrorsAlarm',
        'The function has failed for 15 minutes: events are being retried, then dead-lettered',
        this.function.metricErrors({ period, statistic: 'Sum' }),
        { sustained: true },
      ),
      alarm(
        'DataDogPushFailuresAlarm',
        'Pushes to DataDog have failed for 15 minutes: check the API key, the site and DataDog status',
        logCount('DataDogPushFailures', LOG_MARKERS.dataDogPushFailures),
        { sustained: true },
      ),
      alarm(
        'NamesUnavailableAlarm',
        'The function cannot set up names (the Genesys OAuth client secret or its permission): points carry ids, counting goes on',
        logCount('NamesUnavailable', LOG_MARKERS.namesUnavailable),
      ),
      alarm(
        'DeadLetterQueueAlarm',
        'Events reached the dead-letter queue: inspect and drain them',
        this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }),
      ),
      alarm(
        'DeadLetterSendFailuresAlarm',
        'EventBridge could neither deliver events nor put them in the dead-letter queue: they are lost',
        ruleMetric('InvocationsFailedToBeSentToDlq', 'Sum', period),
      ),
      this.noEventsAlarm(settings, ruleMetric('MatchedEvents', 'Sum', period)),
    ];
    if (!settings.paused) {
      // Paused in direct mode, every event is a throttle by design.
      alarms.push(
        alarm(
          'FunctionThrottlesAlarm',
          'The function has been throttled for 15 minutes: raise its concurrency',
          this.function.metricThrottles({ period, statistic: 'Sum' }),
          { sustained: true },
        ),
      );
    }
    if (this.reconcileFunction) {
      // A failed run sends no coverage, which the DataDog monitor cannot tell from a quiet hour.
      alarms.push(
        alarm(
          'ReconcileFailedAlarm',
          'The hourly reconciliation failed, so no coverage reached DataDog: its log says why (the OAuth client\'s analytics permissions, a failed job, the table)',
          this.reconcileFunction.metricErrors({ period: Duration.hours(1), statistic: 'Sum' }),
        ),
      );
    }
    if (this.deadLetterBucket) {
      const bucketName = this.deadLetterBucket.bucketName;
      alarms.push(
        alarm(
          'DeadLetterBucketAlarm',
          settings.paused
            ? `PAUSED: events wait in the dead-letter bucket (not lost); they can be drained for ${settings.retentionDays - MAX_KEY_AGE_DAYS} days: ${resume}, then flow-metrics drain --bucket`
            : 'Failed invocations reached the dead-letter bucket: fix the cause, then flow-metrics drain --bucket',
          new cloudwatch.Metric({
            namespace: 'AWS/S3',
            metricName: 'PutRequests',
            dimensionsMap: { BucketName: bucketName, FilterId: 'EntireBucket' },
            statistic: 'Sum',
            period,
          }),
        ),
        alarm(
          'DestinationDeliveryFailuresAlarm',
          'Failed invocations could not be written to the dead-letter bucket: those events are lost',
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
          settings.paused
            ? `PAUSED: events wait in the event queue (not lost), kept ${QUEUE_RETENTION.toDays()} days: ${resume} before then`
            : 'Events wait in the queue for more than five minutes',
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

  /**
   * No event for `noEventsAlarmMinutes` of opening hours: Genesys stopped sending. A schedule in
   * the centre's time zone marks each five minutes the centre is open with a point; the alarm is
   * a composite of "open for that long" and "silent for that long", so nights, weekends and
   * holidays raise nothing. Each child treats missing data as CloudWatch documents it, with no
   * metric math over series that may hold no point at all.
   */
  private noEventsAlarm(settings: FlowMetricsSettings, matched: cloudwatch.Metric): cloudwatch.AlarmBase {
    const periods = settings.noEventsAlarmMinutes / OPENING_STEP_MINUTES;
    const silent = (id: string, description: string) =>
      new cloudwatch.Alarm(this, id, {
        alarmDescription: description,
        metric: matched,
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: periods,
        datapointsToAlarm: periods,
        // No point is no event.
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
    const topics = 'is the integration active, and its topics subscribed?';
    if (settings.openingHours === undefined) {
      return silent('NoEventsAlarm', `The rule matched no Genesys event for ${settings.noEventsAlarmMinutes} minutes: ${topics}`);
    }
    const role = new iam.Role(this, 'OpeningHoursRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'),
      description: 'genesys-flow-metrics: marks the centre\'s opening hours in CloudWatch',
    });
    // PutMetricData has no resource-level permission: the namespace condition narrows it.
    const markOpeningHours = new iam.PolicyStatement({
      sid: 'MarkOpeningHours',
      actions: ['cloudwatch:PutMetricData'],
      resources: ['*'],
      conditions: { StringEquals: { 'cloudwatch:namespace': METRICS_NAMESPACE } },
    });
    openingHeartbeatCrons(settings.openingHours).forEach((cron, index) => {
      new scheduler.Schedule(this, `OpeningHours${index + 1}`, {
        description: `genesys-flow-metrics: the centre is open (${settings.openingHoursText}, ${settings.timeZone})`,
        schedule: scheduler.ScheduleExpression.expression(cron, TimeZone.of(settings.timeZone)),
        target: new schedulerTargets.Universal({
          service: 'cloudwatch',
          action: 'putMetricData',
          role,
          policyStatements: [markOpeningHours],
          retryAttempts: 2,
          input: scheduler.ScheduleTargetInput.fromObject({
            Namespace: METRICS_NAMESPACE,
            MetricData: [{ MetricName: 'OpeningHours', Dimensions: [{ Name: 'Stack', Value: this.stackName }], Value: 1, Unit: 'Count' }],
          }),
        }),
      });
    });
    const hours = `${settings.openingHoursText}, ${settings.timeZone}`;
    const open = new cloudwatch.Alarm(this, 'CentreOpenAlarm', {
      alarmDescription: `Not an alert (no action): the centre has been open for ${settings.noEventsAlarmMinutes} minutes (${hours}); NoEventsAlarm's half`,
      metric: new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: 'OpeningHours',
        dimensionsMap: { Stack: this.stackName },
        statistic: 'Sum',
        period: matched.period,
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: periods,
      datapointsToAlarm: periods,
      // No mark is closed.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const quiet = silent(
      'SilenceAlarm',
      `Not an alert (no action): the rule has matched no event for ${settings.noEventsAlarmMinutes} minutes, open or closed; NoEventsAlarm's half`,
    );
    return new cloudwatch.CompositeAlarm(this, 'NoEventsAlarm', {
      alarmDescription: `The rule matched no Genesys event for ${settings.noEventsAlarmMinutes} minutes of opening hours (${hours}): ${topics}`,
      alarmRule: cloudwatch.AlarmRule.allOf(
        cloudwatch.AlarmRule.fromAlarm(open, cloudwatch.AlarmState.ALARM),
        cloudwatch.AlarmRule.fromAlarm(quiet, cloudwatch.AlarmState.ALARM),
      ),
    });
  }

  private addOutputs(settings: FlowMetricsSettings, secret: secretsmanager.ISecret): void {
    new CfnOutput(this, 'TableName', { value: this.table.tableName, description: 'The ledger table (for flow-metrics audit)' });
    new CfnOutput(this, 'FunctionName', { value: this.function.functionName });
    new CfnOutput(this, 'LogGroupName', { value: this.logGroup.logGroupName, description: 'The function\'s logs' });
    new CfnOutput(this, 'EventBusName', { value: this.bus.eventBusName });
    new CfnOutput(this, 'RuleName', { value: this.ruleNameOnBus(), description: 'Its MatchedEvents metric shows Genesys is sending' });
    new CfnOutput(this, 'DeadLetterQueueUrl', { value: this.deadLetterQueue.queueUrl });
    if (this.deadLetterBucket) {
      new CfnOutput(this, 'DeadLetterBucketName', {
        value: this.deadLetterBucket.bucketName,
        description: 'Failed invocations (and events of a pause), for flow-metrics drain --bucket',
      });
    }
    if (this.eventQueue) new CfnOutput(this, 'EventQueueUrl', { value: this.eventQueue.queueUrl });
    if (this.reconcileFunction) {
      new CfnOutput(this, 'ReconcileLogGroupName', {
        value: this.reconcileFunction.logGroup.logGroupName,
        description: 'The hourly reconciliation\'s logs (unexplained differences, failures)',
      });
    }
    new CfnOutput(this, 'ApiKeySecretArn', { value: secret.secretArn });
    // What `flow-metrics datadog apply` needs beyond the function's settings: when the centre is
    // closed (its monitors are muted then), and whom the monitors notify.
    new CfnOutput(this, 'OpeningHours', {
      value: JSON.stringify({ text: settings.openingHoursText, timeZone: settings.timeZone, windows: settings.openingHours ?? null }),
      description: 'The centre\'s opening hours, for flow-metrics datadog apply',
    });
    if (settings.datadogNotify.length > 0) {
      new CfnOutput(this, 'DataDogNotify', {
        value: settings.datadogNotify.join(' '),
        description: 'Whom the DataDog monitors notify, for flow-metrics datadog apply',
      });
    }
    new CfnOutput(this, 'Paused', {
      value: settings.paused ? `yes: events are kept (${pauseHolder(settings)}), not counted` : 'no',
    });
  }

  /** A function's log group (`<name>Logs`), and its role (`<name>Role`), which may write there alone. */
  private logsAndRole(name: string, settings: FlowMetricsSettings, description: string): { logGroup: logs.LogGroup; role: iam.Role } {
    const logGroup = new logs.LogGroup(this, `${name}Logs`, {
      retention: settings.logRetentionDays as logs.RetentionDays,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const role = new iam.Role(this, `${name}Role`, { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'), description });
    role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
    return { logGroup, role };
  }

  /**
   * The rule's own name. CloudFormation's Ref of a rule on a custom bus (ours always is) is
   * `<bus>|<rule>`, while its metrics' RuleName dimension and the EventBridge API want the rule's
   * name alone; a partner bus's name holds slashes, never a `|`.
   */
  private ruleNameOnBus(): string {
    return Fn.select(1, Fn.split('|', this.rule.ruleName));
  }

  /** cdk-nag findings reviewed and accepted, each with its reason. */
  private acknowledgeReviewedFindings(): void {
    Validations.of(this.deadLetterQueue).acknowledge({ id: 'AwsSolutions-SQS3', reason: 'This is the dead-letter queue.' });
    if (this.deadLetterBucket) {
      const bucketId = this.getLogicalId(this.deadLetterBucket.node.defaultChild as CfnElement);
      Validations.of(this.function.role as iam.Role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/*]`,
        reason: 'Lambda names each failed invocation\'s record itself (aws/lambda/async/<function>/<date>/…): s3:PutObject on the dead-letter bucket\'s objects, nothing else.',
      });
      Validations.of(this.deadLetterBucket).acknowledge({
        id: 'AwsSolutions-S1',
        reason: 'Only Lambda writes here and flow-metrics drain reads; CloudTrail records both, and request metrics drive its alarm.',
      });
    }
    const openingHoursRole = this.node.tryFindChild('OpeningHoursRole');
    if (openingHoursRole) {
      Validations.of(openingHoursRole).acknowledge({
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason: 'cloudwatch:PutMetricData has no resource-level permission; the cloudwatch:namespace condition limits it to this stack\'s namespace.',
      });
    }
  }
}

/**
 * Lambda's on-failure destination in a bucket, with the two permissions Lambda documents for it
 * (`s3:PutObject`, `s3:ListBucket`): CDK's own S3 destination would also let the function read
 * every record.
 */
class FailedInvocationsBucket implements lambda.IDestination {
  constructor(private readonly bucket: s3.IBucket) {}

  bind(_scope: Construct, fn: lambda.IFunction): lambda.DestinationConfig {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'WriteFailedInvocations',
        actions: ['s3:PutObject'],
        resources: [this.bucket.arnForObjects('*')],
      }),
    );
    fn.addToRolePolicy(new iam.PolicyStatement({ sid: 'ListFailedInvocations', actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }));
    return { destination: this.bucket.bucketArn };
  }
}

/** Where a pause keeps the events. */
function pauseHolder(settings: FlowMetricsSettings): string {
  return settings.mode === 'queued'
    ? `in the event queue, up to ${QUEUE_RETENTION.toDays()} days`
    : `in the dead-letter bucket; drainable for ${settings.retentionDays - MAX_KEY_AGE_DAYS} days`;
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
