//! Prometheus metrics in the text exposition format, kept with atomics and
//! one small map (no metrics library).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// KBS counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Successful attestations.
    pub attest_ok: AtomicU64,
    /// Refused attestations.
    pub attest_refused: AtomicU64,
    /// Resources released.
    pub resources_released: AtomicU64,
    /// Resource requests denied by policy.
    pub policy_denied: AtomicU64,
    /// Workload certificates issued.
    pub certs_issued: AtomicU64,
    /// Requests refused by the rate limiter.
    pub rate_limited: AtomicU64,
}

impl Metrics {
    /// Counts one request on `route` answered with `status`.
    pub fn request(&self, route: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route, status)).or_insert(0) += 1;
    }

    /// Increments a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the current number of sessions.
    pub fn render(&self, sessions: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP kbs_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(s, "# TYPE kbs_http_requests_total counter");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "kbs_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} counter");
            let _ = writeln!(s, "{name} {}", v.load(Ordering::Relaxed));
        };
        counter(
            "kbs_attestations_ok_total",
            "Successful attestations.",
            &self.attest_ok,
        );
        counter(
            "kbs_attestations_refused_total",
            "Refused attestations.",
            &self.attest_refused,
        );
        counter(
            "kbs_resources_released_total",
            "Resources released.",
            &self.resources_released,
        );
        counter(
            "kbs_policy_denied_total",
            "Requests denied by policy.",
            &self.policy_denied,
        );
        counter(
            "kbs_certificates_issued_total",
            "Workload certificates issued.",
            &self.certs_issued,
        );
        counter(
            "kbs_rate_limited_total",
            "Requests refused by the rate limiter.",
            &self.rate_limited,
        );
        let _ = writeln!(s, "# HELP kbs_sessions Sessions held in memory.");
        let _ = writeln!(s, "# TYPE kbs_sessions gauge");
        let _ = writeln!(s, "kbs_sessions {sessions}");
        s
    }
}
