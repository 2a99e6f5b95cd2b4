//! The shapes the console reads (a subset of the GraphQL schema).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    pub host: String,
    pub port: i32,
    pub user: String,
    pub database: String,
    pub uri: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub state: String,
    pub postgres_version: String,
    pub image_type: String,
    pub connection: Option<ConnectionInfo>,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub id: String,
    pub name: String,
    pub state: String,
    pub size_bytes: Option<f64>,
    pub checksum: Option<String>,
    pub source_instance_name: String,
    pub databases: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub position: i32,
    pub name: String,
    pub state: String,
    pub attempt: i32,
    pub started_at: Option<String>,
    pub done: Option<f64>,
    pub total: Option<f64>,
    pub unit: Option<String>,
    pub message: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub at: String,
    pub level: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub error: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub logs: Vec<LogLine>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Nodes<T> {
    pub nodes: Vec<T>,
}

/// Human-readable bytes.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Seconds left at the rate seen so far, if it can be estimated.
pub fn eta_seconds(done: f64, total: f64, elapsed_secs: f64) -> Option<f64> {
    if done <= 0.0 || total <= done || elapsed_secs <= 0.0 {
        return None;
    }
    Some((total - done) / (done / elapsed_secs))
}
