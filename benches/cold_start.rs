//! Cold start and memory, measured on the release binaries:
//! - the Lambda binary from process start to ready for its first event (configuration read,
//!   API key fetched from a fake Secrets Manager on 127.0.0.1, DynamoDB and HTTP clients built);
//! - peak RSS of `flow-metrics replay` over a generated 100,000-event trace;
//! - the binaries' sizes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flow_metrics::cli::simulate::{TraceShape, generate};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RUNS: usize = 30;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let secrets = runtime.block_on(fake_secrets_manager());
    cold_start(&secrets.uri());
    peak_rss();
    binary_sizes();
}

async fn fake_secrets_manager() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "secretsmanager.GetSecretValue"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/x-amz-json-1.1")
                .set_body_string(
                    r#"{"ARN":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:dd-AbCdEf","Name":"dd","SecretString":"0123456789abcdef","VersionId":"v1","CreatedDate":1.7E9}"#,
                ),
        )
        .mount(&server)
        .await;
    server
}

fn cold_start(secrets_url: &str) {
    // Nothing listens here: the function stops once it is ready and asks for its first event.
    let runtime_api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_flow-metrics-lambda"))
            .env_clear()
            .env("FLOW_METRICS_TABLE", "flow-metrics-ledger")
            .env(
                "DD_API_KEY_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dd-AbCdEf",
            )
            .env("AWS_ENDPOINT_URL", secrets_url)
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the function");
        let stdout = child.stdout.take().expect("stdout");
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("\"ready\""));
        let elapsed = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        assert!(ready, "the function never logged that it was ready");
        times.push(elapsed);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cold start to ready (secret fetched from 127.0.0.1), {RUNS} runs: min {:.1} ms, median {:.1} ms, p90 {:.1} ms",
        ms(times[0]),
        ms(times[RUNS / 2]),
        ms(times[RUNS * 9 / 10])
    );
}

fn peak_rss() {
    let dir = std::env::temp_dir().join(format!("flow-metrics-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("trace.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("trace file"));
    let mut events = 0usize;
    for event in generate(TraceShape {
        conversations: 4760,
        ..TraceShape::default()
    }) {
        file.write_all(event.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .expect("write");
        events += 1;
    }
    file.flush().expect("flush");
    drop(file);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(["replay", path.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run flow-metrics replay");
    let elapsed = started.elapsed();
    assert!(status.success(), "replay failed: {status}");
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    println!(
        "replay of {events} events ({:.0} MB): {:.2} s, {:.0} events/s, peak RSS {:.1} MB",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        usage.ru_maxrss as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn binary_sizes() {
    for (name, path) in [
        (
            "flow-metrics-lambda (bench profile = release)",
            env!("CARGO_BIN_EXE_flow-metrics-lambda").to_owned(),
        ),
        (
            "bootstrap from `cargo lambda build --release`",
            format!(
                "{}/target/lambda/flow-metrics-lambda/bootstrap",
                env!("CARGO_MANIFEST_DIR")
            ),
        ),
    ] {
        match std::fs::metadata(&path) {
            Ok(metadata) => println!("{name}: {:.1} MB", metadata.len() as f64 / 1e6),
            Err(_) => println!("{name}: not built"),
        }
    }
}
