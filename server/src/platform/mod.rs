//! Where instances live and backup/restore jobs run. The trait's operations are the seed's steps;
//! `local` runs PostgreSQL clusters on this machine (the embedded default).

pub mod kubernetes;
pub mod local;

use std::time::Duration;

use async_trait::async_trait;
use entity::ImageType;
use tokio::sync::watch;
use uuid::Uuid;

use crate::secrets::Password;
use crate::storage::{ImageKeys, Manifest};

/// Errors of a platform operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Process(#[from] crate::process::Error),
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    #[error("{what} at {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to PostgreSQL at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: sea_orm::sqlx::Error,
    },
    #[error("query on {endpoint} failed")]
    Query {
        endpoint: String,
        #[source]
        source: sea_orm::sqlx::Error,
    },
    #[error("object {key} is corrupt: sha256 {actual} does not match the manifest's {expected}")]
    Checksum {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("the image manifest is invalid: {0}")]
    Manifest(String),
    #[error("{0} did not happen within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("OS user {0:?} for PostgreSQL processes not found")]
    NoSuchUser(String),
    #[error("the restore job failed: {0}")]
    JobFailed(String),
    #[error("no free port")]
    NoPort(#[source] std::io::Error),
    #[error("Kubernetes: {op}")]
    Kube {
        op: String,
        retryable: bool,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    NotReady(String),
}

impl Error {
    /// Whether a retry can help: checksum and manifest errors never heal, connection problems may.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Process(crate::process::Error::Failed { .. }) => true,
            Self::Process(_) => false,
            Self::Storage(e) => e.is_retryable(),
            Self::Io { .. }
            | Self::Connect { .. }
            | Self::Query { .. }
            | Self::Timeout(..)
            | Self::NoPort(_) => true,
            Self::Checksum { .. } | Self::Manifest(_) | Self::NoSuchUser(_) => false,
            Self::JobFailed(_) => false,
            Self::Kube { retryable, .. } => *retryable,
            Self::NotReady(_) => true,
        }
    }

    /// Turns this error into a step error of the right kind.
    pub fn into_step(self) -> crate::tasks::StepError {
        if self.is_retryable() {
            crate::tasks::StepError::Retryable(Box::new(self))
        } else {
            crate::tasks::StepError::Fatal(Box::new(self))
        }
    }
}

/// Result with the platform [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a platform needs to know of an instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub id: Uuid,
    pub k8s_name: String,
    /// DNS label for a public address (Kubernetes: the Azure load balancer's DNS label).
    pub dns_label: String,
    pub port: u16,
    pub postgres_version: String,
    pub image_type: ImageType,
    pub storage_size_gb: i32,
}

/// Where to reach a PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Receiving ends of a [`Progress`]: byte counts and output lines.
pub type ProgressReceivers = (
    watch::Receiver<(u64, Option<u64>)>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
);

/// What a long-running operation reports while it runs: byte progress (done, total if known)
/// and log lines (a Job's output), both forwarded to the task by the workflow.
#[derive(Debug, Clone)]
pub struct Progress {
    bytes: watch::Sender<(u64, Option<u64>)>,
    log: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Progress {
    /// A reporter and the receiving ends.
    pub fn channel() -> (Self, ProgressReceivers) {
        let (bytes, brx) = watch::channel((0, None));
        let (log, lrx) = tokio::sync::mpsc::unbounded_channel();
        (Self { bytes, log }, (brx, lrx))
    }

    /// Reports bytes done (and the total when known).
    pub fn send_replace(&self, v: (u64, Option<u64>)) {
        self.bytes.send_replace(v);
    }

    /// Reports a line of output.
    pub fn log(&self, line: impl Into<String>) {
        let _ = self.log.send(line.into());
    }
}

/// A backup to take.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    /// The task: job names derive from it, so a re-run finds its own job.
    pub task_id: Uuid,
    pub image_id: Uuid,
    /// The source instance's object name.
    pub source_name: String,
    pub keys: ImageKeys,
    pub source: Endpoint,
    pub password: Password,
    pub postgres_version: String,
    pub image_type: ImageType,
}

/// A restore to run into an instance's volume.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    /// The task: job names derive from it.
    pub task_id: Uuid,
    pub image_id: Uuid,
    pub keys: ImageKeys,
    /// sha256 of the manifest as recorded on the image: the root of trust for every object.
    pub manifest_sha256: String,
    pub password: Password,
}

/// Writes the manifest of a finished backup (every platform ends its backup this way) and
/// returns it with its sha256, the image's checksum.
pub async fn write_manifest(
    storage: &crate::storage::Storage,
    spec: &BackupSpec,
    globals: crate::storage::ObjectEntry,
    databases: Vec<crate::storage::DatabaseEntry>,
) -> Result<(Manifest, String)> {
    let manifest = Manifest {
        format_version: Manifest::FORMAT_VERSION,
        image_id: spec.image_id,
        postgres_version: spec.postgres_version.clone(),
        image_type: spec.image_type,
        created_at: chrono::Utc::now(),
        globals,
        databases,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Manifest(e.to_string()))?;
    let written = storage
        .put_bytes(&spec.keys.manifest(), bytes::Bytes::from(bytes))
        .await?;
    Ok((manifest, written.sha256))
}

/// Connects to PostgreSQL with a password (never on a command line).
pub async fn connect(ep: &Endpoint, pw: &Password) -> Result<sea_orm::sqlx::PgConnection> {
    use sea_orm::sqlx::Connection;
    let opts = sea_orm::sqlx::postgres::PgConnectOptions::new()
        .host(&ep.host)
        .port(ep.port)
        .username(&ep.user)
        .password(pw.expose())
        .database(&ep.database);
    sea_orm::sqlx::PgConnection::connect_with(&opts)
        .await
        .map_err(|source| Error::Connect {
            endpoint: ep.to_string(),
            source,
        })
}

/// Connects and runs `SELECT 1` within `timeout`.
pub async fn select_one(ep: &Endpoint, password: &Password, timeout: Duration) -> Result<()> {
    use sea_orm::sqlx::{Connection, Row};
    let fut = async {
        let mut c = connect(ep, password).await?;
        let row = sea_orm::sqlx::query("SELECT 1::int4 AS one")
            .fetch_one(&mut c)
            .await
            .map_err(|source| Error::Query {
                endpoint: ep.to_string(),
                source,
            })?;
        let one: i32 = row.try_get("one").map_err(|source| Error::Query {
            endpoint: ep.to_string(),
            source,
        })?;
        let _ = c.close().await;
        if one != 1 {
            return Err(Error::JobFailed("SELECT 1 returned something else".into()));
        }
        Ok(())
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| Error::Timeout("a test connection", timeout))?
}

/// Where instances live and jobs run.
#[async_trait]
pub trait Platform: Send + Sync + 'static {
    /// `local` or `kubernetes`.
    fn name(&self) -> &'static str;
    /// The port a new instance will listen on (stable once recorded).
    fn assign_port(&self) -> Result<u16>;
    /// Creates the instance's storage (a PVC; a data directory).
    async fn create_volume(&self, inst: &InstanceSpec) -> Result<()>;
    /// Stores the superuser password where the server process reads it.
    async fn create_secret(&self, inst: &InstanceSpec, password: &Password) -> Result<()>;
    /// Initialises configuration (and, locally, the cluster itself).
    async fn create_config(&self, inst: &InstanceSpec, password: &Password) -> Result<()>;
    /// Starts PostgreSQL for a fresh instance.
    async fn deploy_postgres(&self, inst: &InstanceSpec) -> Result<()>;
    /// Starts PostgreSQL on a restored volume.
    async fn deploy_postgres_from_volume(&self, inst: &InstanceSpec) -> Result<()>;
    /// Waits until PostgreSQL accepts connections with the password.
    async fn wait_ready(
        &self,
        inst: &InstanceSpec,
        password: &Password,
        timeout: Duration,
    ) -> Result<()>;
    /// Where clients connect (on Kubernetes, once the load balancer has an address).
    async fn endpoint(&self, inst: &InstanceSpec) -> Result<Endpoint>;
    /// Connects and runs `SELECT 1`.
    async fn test_connection(
        &self,
        endpoint: &Endpoint,
        password: &Password,
        timeout: Duration,
    ) -> Result<()>;
    /// Dumps every database and the globals into the store; returns the manifest written.
    async fn run_backup(&self, spec: &BackupSpec, progress: Progress)
        -> Result<(Manifest, String)>;
    /// Starts the restore job for an instance.
    async fn start_restore_job(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        progress: Progress,
    ) -> Result<()>;
    /// Waits for the restore job to finish; a failed job is an error.
    async fn wait_restore_job(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        progress: Progress,
        timeout: Duration,
    ) -> Result<()>;
    /// Stops PostgreSQL (idempotent).
    async fn stop_postgres(&self, inst: &InstanceSpec) -> Result<()>;
    /// Removes everything the instance had (idempotent).
    async fn delete_resources(&self, inst: &InstanceSpec) -> Result<()>;
    /// After a server restart: makes sure a running instance is running again.
    async fn ensure_running(&self, inst: &InstanceSpec) -> Result<()>;
}
