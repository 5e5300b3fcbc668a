//! Emulators and local servers as child processes on 127.0.0.1, each on a port proven its own.
//!
//! A port that was free a moment ago can be taken by another process before the child binds it,
//! and a wait that only connects would then talk to someone else's server. So a child is ready
//! only when the kernel lists a listening socket on its port among the child's own file
//! descriptors; if the child exits first (its port was taken), it is started again on another.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

/// A child process killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Best effort: the process may have exited already.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nobody listens on right now, on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Socket inodes listening on `port` (IPv4 or IPv6), from the kernel's tables.
fn listening_inodes(port: u16) -> Vec<String> {
    let port = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit(':').next()?;
                    // State 0A is LISTEN.
                    (local_port == port && *fields.get(3)? == "0A")
                        .then(|| fields.get(9).map(|i| (*i).to_owned()))?
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether process `pid` holds a socket listening on `port`.
fn listens_on(pid: u32, port: u16) -> bool {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| {
            let target = target.to_string_lossy();
            inodes.iter().any(|inode| target == format!("socket:[{inode}]"))
        })
}

/// Starts `command(port)` on a free port and waits until the child itself listens there.
/// Tries new ports while the child exits before listening (its port was taken meanwhile).
pub fn start_listening(what: &str, command: impl Fn(u16) -> Command) -> (Running, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Running(
            command(port)
                .spawn()
                .unwrap_or_else(|error| panic!("start {what}: {error}")),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if listens_on(child.0.id(), port) {
                return (child, port);
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                eprintln!("{what} exited ({status}) before listening on port {port}; trying another port");
                break;
            }
            assert!(Instant::now() < deadline, "{what} did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{what} could not listen on any of five free ports");
}

/// A running dynalite, killed when dropped.
pub struct Dynalite {
    _process: Running,
    pub endpoint: String,
}

/// Starts an emulator installed at `relative` (under the crate) on a port of its own, with the
/// arguments `args` gives for that port; `hint` says how to install it.
fn start_installed(
    what: &str,
    relative: &str,
    hint: &str,
    args: impl Fn(&str) -> Vec<String>,
) -> (Running, String) {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    assert!(binary.exists(), "{what} is not installed: {hint}");
    let (process, port) = start_listening(what, |port| {
        let mut command = Command::new(&binary);
        command
            .args(args(&port.to_string()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    });
    (process, format!("http://127.0.0.1:{port}"))
}

impl Dynalite {
    pub fn start() -> Dynalite {
        let (process, endpoint) = start_installed(
            "dynalite",
            "tests/emulator/node_modules/.bin/dynalite",
            "run `npm ci --prefix tests/emulator` (scripts/test.sh does)",
            |port| {
                ["--host", "127.0.0.1", "--port", port]
                    .into_iter()
                    .chain([
                        "--createTableMs",
                        "0",
                        "--deleteTableMs",
                        "0",
                        "--updateTableMs",
                        "0",
                    ])
                    .map(str::to_owned)
                    .collect()
            },
        );
        Dynalite {
            _process: process,
            endpoint,
        }
    }

    /// A client for the emulator, with dummy credentials and quick retries.
    pub fn client(&self) -> Client {
        client_for(&self.endpoint)
    }

    /// Environment for a `flow-metrics` process that talks to this emulator and nothing else.
    pub fn environment(&self) -> [(&'static str, String); 5] {
        environment_for(&self.endpoint)
    }
}

/// A DynamoDB client for an endpoint on this machine, with dummy credentials and quick retries.
pub fn client_for(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "dynalite"))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(5)))
        .build();
    Client::from_conf(config)
}

/// Environment for a `flow-metrics` process that talks to `endpoint` for AWS and nothing else.
pub fn environment_for(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
    ]
}

/// `flow-metrics replay --ledger dynamodb --table TABLE ARGS…` against the DynamoDB at `endpoint`.
pub fn replay_into_dynamodb(endpoint: &str, table: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flow-metrics"));
    command
        .args(["replay", "--ledger", "dynamodb", "--table", table])
        .args(args)
        .envs(environment_for(endpoint));
    command
}

/// A running moto server (SQS and more, from PyPI's `moto[server]`), killed when dropped.
pub struct Moto {
    _process: Running,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let (process, endpoint) = start_installed(
            "moto_server",
            ".tools/venv/bin/moto_server",
            "run scripts/test.sh (pip install 'moto[server]' into .tools/venv)",
            |port| {
                ["-H", "127.0.0.1", "-p", port]
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            },
        );
        Moto {
            _process: process,
            endpoint,
        }
    }
}
