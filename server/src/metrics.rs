//! Process metrics for `/metrics` (Prometheus text): API requests by operation and outcome, step
//! durations by task kind, step and outcome, bytes moved by step. Task counts by kind and state
//! come from the database at scrape time, so they agree across replicas.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// Step tries by (kind, step, outcome): (count, seconds).
type StepTimes = BTreeMap<(String, String, String), (u64, f64)>;

/// Counters and sums, keyed by their labels.
#[derive(Default)]
pub struct Metrics {
    api: Mutex<BTreeMap<(String, String), u64>>,
    steps: Mutex<StepTimes>,
    bytes: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// One API request.
    pub fn api_request(&self, operation: &str, outcome: &str) {
        if let Ok(mut m) = self.api.lock() {
            *m.entry((operation.to_owned(), outcome.to_owned()))
                .or_default() += 1;
        }
    }

    /// One finished step try.
    pub fn step(&self, kind: &str, step: &str, outcome: &str, seconds: f64) {
        if let Ok(mut m) = self.steps.lock() {
            let e = m
                .entry((kind.to_owned(), step.to_owned(), outcome.to_owned()))
                .or_default();
            e.0 += 1;
            e.1 += seconds;
        }
    }

    /// Bytes a step moved to or from the store.
    pub fn bytes(&self, step: &str, n: u64) {
        if let Ok(mut m) = self.bytes.lock() {
            *m.entry(step.to_owned()).or_default() += n;
        }
    }

    /// Renders the in-process metrics.
    pub fn render(&self, out: &mut String) {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "# HELP snapgres_api_requests_total API requests by operation and outcome.\n# TYPE snapgres_api_requests_total counter");
        if let Ok(m) = self.api.lock() {
            for ((op, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "snapgres_api_requests_total{{operation=\"{}\",outcome=\"{}\"}} {n}",
                    esc(op),
                    esc(outcome)
                );
            }
        }
        let _ = writeln!(out, "# HELP snapgres_step_duration_seconds Time spent in step tries.\n# TYPE snapgres_step_duration_seconds summary");
        if let Ok(m) = self.steps.lock() {
            for ((kind, step, outcome), (count, sum)) in m.iter() {
                let l = format!(
                    "kind=\"{}\",step=\"{}\",outcome=\"{}\"",
                    esc(kind),
                    esc(step),
                    esc(outcome)
                );
                let _ = writeln!(out, "snapgres_step_duration_seconds_sum{{{l}}} {sum:.6}\nsnapgres_step_duration_seconds_count{{{l}}} {count}");
            }
        }
        let _ = writeln!(out, "# HELP snapgres_bytes_moved_total Bytes moved to or from the image store.\n# TYPE snapgres_bytes_moved_total counter");
        if let Ok(m) = self.bytes.lock() {
            for (step, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "snapgres_bytes_moved_total{{step=\"{}\"}} {n}",
                    esc(step)
                );
            }
        }
    }
}
