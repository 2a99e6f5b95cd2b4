//! Configuration: the only place that reads the environment.
//!
//! Every setting is a command-line flag with an environment variable and a default:
//!
//! | flag | variable | default |
//! |---|---|---|
//! | `--listen` | `SNAPGRES_LISTEN` | `127.0.0.1:8080` |
//! | `--data-dir` | `SNAPGRES_DATA_DIR` | `./snapgres-data` |
//! | `--database-url` | `DATABASE_URL` | SQLite file `snapgres.db` in the data dir |
//! | `--storage-url` | `SNAPGRES_STORAGE_URL` | directory `images/` in the data dir (`file:///path`, `az://container`, `s3://bucket`) |
//! | `--admin-token` | `SNAPGRES_ADMIN_TOKEN` | generated at first start and printed once |
//! | `--secret-key` | `SNAPGRES_SECRET_KEY` | 32 random bytes in `secret.key` (0600) in the data dir |
//! | `--pg-bin-dir` | `SNAPGRES_PG_BIN_DIR` | `/usr/lib/postgresql/15/bin` |
//! | `--run-as` | `SNAPGRES_RUN_AS` | `postgres` (OS user for PostgreSQL processes when running as root) |
//! | `--platform` | `SNAPGRES_PLATFORM` | `local` (or `kubernetes`; settings `SNAPGRES_K8S_*`) |
//! | `--workers` | `SNAPGRES_WORKERS` | `4` (`0`: an API-only replica) |
//! | `--max-active-tasks-per-token` | `SNAPGRES_MAX_ACTIVE_TASKS_PER_TOKEN` | `20` |
//! | `--lease-secs` | `SNAPGRES_LEASE_SECS` | `30` |
//! | `--restore-jobs` | `SNAPGRES_RESTORE_JOBS` | number of cores |
//! | `--dump-compression` | `SNAPGRES_DUMP_COMPRESSION` | `1` (gzip level for pg_dump) |
//! | `--console-dir` | `SNAPGRES_CONSOLE_DIR` | `web/dist` if it exists, else a built-in page |
//! | `--log-format` | `SNAPGRES_LOG_FORMAT` | `text` (or `json`) |
//! | (log filter) | `RUST_LOG` | `info` |
//!
//! Cloud stores take their credentials from object_store's standard variables
//! (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_USE_EMULATOR`,
//! `AZURITE_BLOB_STORAGE_URL`, `AZURE_CLIENT_ID` + `AZURE_FEDERATED_TOKEN_FILE` for workload
//! identity; `AWS_*` for S3). The Azure ones below are also read here, to create the container
//! on first use when an account key is available.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is handed to the thing that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for SecretString {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Where instances run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformKind {
    /// PostgreSQL clusters run by this server from the installed binaries.
    Local,
    /// Kubernetes (in-cluster config or kubeconfig), images in Azure Blob.
    Kubernetes,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings shared by every subcommand that touches the database.
#[derive(clap::Args, Clone, Debug)]
pub struct DbConfig {
    /// Directory for the SQLite database, the key file, local instances and the default image store.
    #[arg(long, env = "SNAPGRES_DATA_DIR", default_value = "./snapgres-data")]
    pub data_dir: PathBuf,
    /// CMS database URL (`sqlite://...` or `postgres://...`); default: SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
}

impl DbConfig {
    /// The database URL to connect to.
    pub fn database_url(&self) -> SecretString {
        match &self.database_url {
            Some(url) => url.clone(),
            None => SecretString::new(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("snapgres.db").display()
            )),
        }
    }
}

/// Azure settings used to create the image container on first use.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AzureConfig {
    /// Azure storage account (object_store reads the same variable).
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT_NAME")]
    pub azure_account: Option<String>,
    /// Azure storage account key; without one (workload identity) the container must exist.
    #[arg(long, env = "AZURE_STORAGE_ACCOUNT_KEY", hide_env_values = true)]
    pub azure_key: Option<SecretString>,
    /// Use the Azurite emulator.
    #[arg(long, env = "AZURE_STORAGE_USE_EMULATOR", action = clap::ArgAction::Set, default_value_t = false)]
    pub azure_use_emulator: bool,
    /// Azurite's blob endpoint (default `http://127.0.0.1:10000`).
    #[arg(long, env = "AZURITE_BLOB_STORAGE_URL")]
    pub azurite_url: Option<String>,
}

/// Kubernetes platform settings (images, namespace, identity, storage).
#[derive(clap::Args, Clone, Debug)]
pub struct KubeConfig {
    /// Namespace for instances and jobs.
    #[arg(long, env = "SNAPGRES_K8S_NAMESPACE", default_value = "snapgres")]
    pub k8s_namespace: String,
    /// PostgreSQL server image.
    #[arg(
        long,
        env = "SNAPGRES_K8S_POSTGRES_IMAGE",
        default_value = "postgres:15"
    )]
    pub k8s_postgres_image: String,
    /// Image with PostgreSQL 15 client tools, azcopy and jq, for backup and restore Jobs.
    #[arg(
        long,
        env = "SNAPGRES_K8S_TOOLS_IMAGE",
        default_value = "ghcr.io/example/snapgres-tools:15"
    )]
    pub k8s_tools_image: String,
    /// Image of the Snapgres server (for its own Deployment).
    #[arg(
        long,
        env = "SNAPGRES_K8S_SERVER_IMAGE",
        default_value = "ghcr.io/example/snapgres:latest"
    )]
    pub k8s_server_image: String,
    /// Storage class of instance volumes (cluster default when unset).
    #[arg(long, env = "SNAPGRES_K8S_STORAGE_CLASS")]
    pub k8s_storage_class: Option<String>,
    /// Service account with the workload identity federation.
    #[arg(long, env = "SNAPGRES_K8S_SERVICE_ACCOUNT", default_value = "snapgres")]
    pub k8s_service_account: String,
    /// Client id of the managed identity.
    #[arg(
        long,
        env = "AZURE_CLIENT_ID",
        default_value = "00000000-0000-0000-0000-000000000000"
    )]
    pub azure_client_id: String,
    /// Storage account holding images.
    #[arg(
        long = "k8s-storage-account",
        env = "AZURE_STORAGE_ACCOUNT_NAME",
        default_value = "examplestorage"
    )]
    pub k8s_storage_account: String,
    /// Blob container holding images.
    #[arg(
        long,
        env = "SNAPGRES_K8S_CONTAINER",
        default_value = "snapgres-images"
    )]
    pub k8s_container: String,
}

/// `snapgres serve` settings.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeConfig {
    #[command(flatten)]
    pub db: DbConfig,
    /// Address the API and console listen on.
    #[arg(long, env = "SNAPGRES_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where images are stored: a directory path or `file:///dir`; default `images/` in the data dir.
    #[arg(long, env = "SNAPGRES_STORAGE_URL")]
    pub storage_url: Option<String>,
    #[command(flatten)]
    pub azure: AzureConfig,
    /// Bootstrap admin token; without it the first start generates one and prints it once.
    #[arg(long, env = "SNAPGRES_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,
    /// Base64 of the 32-byte AES-256-GCM key for stored passwords; default a key file in the data dir.
    #[arg(long, env = "SNAPGRES_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<SecretString>,
    /// Where instances run.
    #[arg(long, env = "SNAPGRES_PLATFORM", value_enum, default_value = "local")]
    pub platform: PlatformKind,
    #[command(flatten)]
    pub kube: KubeConfig,
    /// Directory holding initdb, pg_ctl, pg_dump, pg_dumpall, pg_restore, psql.
    #[arg(
        long,
        env = "SNAPGRES_PG_BIN_DIR",
        default_value = "/usr/lib/postgresql/15/bin"
    )]
    pub pg_bin_dir: PathBuf,
    /// OS user that runs PostgreSQL processes when the server runs as root (initdb refuses root).
    #[arg(long, env = "SNAPGRES_RUN_AS", default_value = "postgres")]
    pub run_as: String,
    /// Number of tasks this server runs at once (0: serve the API only).
    #[arg(long, env = "SNAPGRES_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Task lease length in seconds; a task whose worker stops renewing it is taken over after this.
    #[arg(long, env = "SNAPGRES_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Parallel jobs per database for pg_restore (`-j`); default the number of cores.
    #[arg(long, env = "SNAPGRES_RESTORE_JOBS")]
    pub restore_jobs: Option<usize>,
    /// gzip level pg_dump uses (0-9); 1 is about twice as fast as the default 6 for ~4% more bytes.
    #[arg(long, env = "SNAPGRES_DUMP_COMPRESSION", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub dump_compression: u8,
    /// Directory with the built web console (Trunk's `dist`).
    #[arg(long, env = "SNAPGRES_CONSOLE_DIR")]
    pub console_dir: Option<PathBuf>,
    /// Most unfinished tasks one API token may have at once.
    #[arg(
        long,
        env = "SNAPGRES_MAX_ACTIVE_TASKS_PER_TOKEN",
        default_value_t = 20
    )]
    pub max_active_tasks_per_token: u64,
    /// Log format.
    #[arg(long, env = "SNAPGRES_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeConfig {
    /// Lease length as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// Parallel restore jobs, defaulting to the number of cores.
    pub fn restore_jobs(&self) -> usize {
        self.restore_jobs
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            })
            .max(1)
    }

    /// Where the console is served from, if built.
    pub fn console_dir(&self) -> Option<PathBuf> {
        match &self.console_dir {
            Some(d) => Some(d.clone()),
            None => {
                let d = PathBuf::from("web/dist");
                d.join("index.html").exists().then_some(d)
            }
        }
    }
}

/// The log filter from `RUST_LOG`, default `info`.
pub fn log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".to_owned())
}
