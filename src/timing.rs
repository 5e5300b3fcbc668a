//! How long things may take: the Lambda's timeout and retries, the claim lease, the margins
//! that keep every push inside its claim, and the jitter of retries.
//!
//! A claim must outlive the invocation that holds it (or a slow holder's push could overlap a
//! second holder's), and must end before Lambda retries the event (or the retry would find the
//! dead holder's claim still live and fail again). So the lease is the function's timeout plus a
//! few seconds, below Lambda's first asynchronous retry, about a minute later. The cdk app reads
//! the same numbers from `timing.json` beside this file.

use jiff::SignedDuration;

/// The function's timeout as the cdk app deploys it by default.
pub const DEFAULT_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);

/// How much longer than the function's timeout a claim holds.
pub const LEASE_MARGIN: SignedDuration = SignedDuration::from_secs(10);

/// The lease for the default timeout: what `replay`, `redrive` and the Lambda use by default.
pub const DEFAULT_LEASE: SignedDuration = SignedDuration::from_secs(40);

/// About when Lambda first retries a failed asynchronous invocation (the second retry comes
/// about two minutes after the first).
pub const ASYNC_FIRST_RETRY: SignedDuration = SignedDuration::from_secs(60);

/// Kept back from the invocation's deadline for confirming or releasing after the last push: one
/// ledger call at its slowest (the SDK's per-call limit, 6 s), and a second to spare. A confirm
/// retry starts only if it too can end before the deadline.
pub const CONFIRM_RESERVE: std::time::Duration = std::time::Duration::from_secs(7);

/// A push must end this long before the lease of the claims it carries: so that the confirm
/// after it (one ledger call at its slowest, 6 s) ends before any process, by its own clock
/// (each within 2 s of AWS's), sees the lease over and takes the keys.
pub const LEASE_SAFETY: std::time::Duration = std::time::Duration::from_secs(11);

/// No push attempt starts with less time than this left.
pub const MIN_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(3);

/// The shared definition itself.
pub const TIMING_JSON: &str = include_str!("timing.json");

/// A pause of between half and all of `pause`, at random: so that processes retrying alike do
/// not retry in step.
pub fn jittered(pause: std::time::Duration) -> std::time::Duration {
    pause.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// The lease for a function with this timeout.
pub fn lease_for(timeout: SignedDuration) -> SignedDuration {
    timeout.saturating_add(LEASE_MARGIN)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn the_numbers_in_code_are_the_shared_definition() {
        let shared: Value = serde_json::from_str(TIMING_JSON).expect("timing.json is JSON");
        let seconds = |name: &str| SignedDuration::from_secs(shared[name].as_i64().expect(name));
        assert_eq!(seconds("defaultTimeoutSeconds"), DEFAULT_TIMEOUT);
        assert_eq!(seconds("leaseMarginSeconds"), LEASE_MARGIN);
        assert_eq!(seconds("asyncFirstRetrySeconds"), ASYNC_FIRST_RETRY);
    }

    #[test]
    fn the_default_lease_outlives_the_invocation_and_ends_before_the_first_retry() {
        assert_eq!(DEFAULT_LEASE, lease_for(DEFAULT_TIMEOUT));
        assert!(DEFAULT_LEASE > DEFAULT_TIMEOUT);
        assert!(DEFAULT_LEASE < ASYNC_FIRST_RETRY);
        // A push ends before its lease, with time left to confirm inside the invocation.
        let margins = LEASE_SAFETY + CONFIRM_RESERVE + MIN_ATTEMPT;
        assert!(margins.as_secs() < DEFAULT_TIMEOUT.as_secs() as u64);
    }
}
