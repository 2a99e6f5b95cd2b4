//! Test harness for end-to-end tests: the real `snapgres` binary on a fresh data dir, a raw
//! PostgreSQL server started from the installed binaries, a GraphQL client and a
//! graphql-transport-ws subscription client. Everything talks to 127.0.0.1 only.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The restore's steps as SPEC.md names them, in order (what users see).
pub const RESTORE_STEPS: [&str; 9] = [
    "fetch_image",
    "get_source_password",
    "create_volume",
    "run_restore_job",
    "wait_restore_job",
    "deploy_postgres_from_volume",
    "wait_ready",
    "get_connection_strings",
    "test_connection",
];

/// Where the installed PostgreSQL binaries are.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A fresh directory every OS user can traverse (PostgreSQL runs as `postgres` when tests are root).
pub fn temp_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("sg-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The `snapgres` binary of this build (`SNAPGRES_BIN` overrides).
pub fn snapgres_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SNAPGRES_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/snapgres
    let p = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("snapgres");
    assert!(
        p.exists(),
        "{} not built: run `cargo build -p snapgres` first",
        p.display()
    );
    p
}

/// A running `snapgres serve`.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    http: reqwest::Client,
    /// Every GraphQL response body this harness received (to check no secret ever appears).
    pub responses: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server on `data_dir` and a free port; waits until it listens.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Result<Self> {
        Self::start_on(data_dir, 0, env).await
    }

    /// Starts the server on `data_dir` and `port` (0: any free port); waits until it listens.
    pub async fn start_on(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Result<Self> {
        let token = "e2e-admin-token-0123456789".to_owned();
        let log = data_dir.with_extension(format!("log{}", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(snapgres_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .env("SNAPGRES_ADMIN_TOKEN", &token)
            .env("SNAPGRES_LEASE_SECS", "3")
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("starting snapgres")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("Snapgres is listening on ") {
                    return Ok::<_, anyhow::Error>(rest.trim_end_matches('/').to_owned());
                }
            }
            bail!("snapgres exited before listening")
        })
        .await
        .map_err(|_| anyhow!("snapgres did not start within 60 s"))??;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child: Some(child),
            url,
            token,
            data_dir: data_dir.to_owned(),
            log,
            http: reqwest::Client::new(),
            responses: Default::default(),
        })
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Runs a GraphQL operation with the admin token; returns the whole response.
    pub async fn gql_raw(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if let Ok(mut r) = self.responses.lock() {
            r.push(text.clone());
        }
        Ok((status, serde_json::from_str(&text)?))
    }

    /// Runs a GraphQL operation and returns `data`, failing on any error.
    pub async fn gql(&self, query: &str, variables: Value) -> Result<Value> {
        let (_, v) = self
            .gql_raw(query, variables, Some(&self.token.clone()))
            .await?;
        if let Some(errs) = v.get("errors") {
            bail!("GraphQL errors: {errs}");
        }
        Ok(v["data"].clone())
    }

    /// Polls a task until it is terminal.
    pub async fn wait_task(&self, id: &str, limit: Duration) -> Result<Value> {
        let start = Instant::now();
        loop {
            let d = self
                .gql("query($id: UUID!) { task(id: $id) { id kind state error attempt steps { name state attempt error done total unit } logs { level message } } }", json!({ "id": id }))
                .await?;
            let t = d["task"].clone();
            if matches!(
                t["state"].as_str(),
                Some("SUCCEEDED" | "FAILED" | "CANCELLED")
            ) {
                return Ok(t);
            }
            if start.elapsed() > limit {
                bail!("task {id} not finished after {limit:?}: {t}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: a crash.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGTERM and wait: a clean stop (the server stops its instances).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(60), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                // Give it a moment to stop its instances.
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline && Path::new(&format!("/proc/{pid}")).exists() {
                    if std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        stop_clusters_under(&self.data_dir.join("instances"));
    }
}

/// Stops every PostgreSQL cluster under `dir` (by its postmaster.pid, through pg_ctl).
pub fn stop_clusters_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let pgdata = e.path().join("pgdata");
        if pgdata.join("postmaster.pid").exists() {
            let mut c = std::process::Command::new("runuser");
            if is_root() {
                c.args(["-u", "postgres", "--"]);
            } else {
                c = std::process::Command::new("env");
            }
            let _ = c
                .arg(format!("{PG_BIN}/pg_ctl"))
                .args(["stop", "-m", "immediate", "-D"])
                .arg(&pgdata)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// True when the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// One graphql-transport-ws subscription.
pub struct Subscription {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Subscription {
    /// Connects to `/graphql/ws`, authenticates in `connection_init`, and subscribes.
    pub async fn start(
        server: &Server,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<Self> {
        let ws_url = format!("{}/graphql/ws", server.url.replacen("http://", "ws://", 1));
        let mut req = ws_url.into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        ws.send(Message::text(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }).to_string())).await?;
        let ack = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .ok_or_else(|| anyhow!("socket closed before ack"))??;
        let ack: Value = serde_json::from_str(ack.to_text()?)?;
        if ack["type"] != "connection_ack" {
            bail!("expected connection_ack, got {ack}");
        }
        ws.send(Message::text(json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }).to_string())).await?;
        Ok(Self { ws })
    }

    /// The `data` of the next `next` message; `None` after `complete`. Errors on an `error` message.
    pub async fn next(&mut self, limit: Duration) -> Result<Option<Value>> {
        loop {
            let msg = tokio::time::timeout(limit, self.ws.next())
                .await
                .map_err(|_| anyhow!("no subscription message within {limit:?}"))?;
            let Some(msg) = msg else { return Ok(None) };
            let msg = msg?;
            let text = match msg {
                Message::Text(t) => t.to_string(),
                Message::Close(_) => return Ok(None),
                _ => continue,
            };
            let v: Value = serde_json::from_str(&text)?;
            match v["type"].as_str() {
                Some("next") => {
                    if let Some(errs) = v["payload"].get("errors") {
                        bail!("subscription errors: {errs}");
                    }
                    return Ok(Some(v["payload"]["data"].clone()));
                }
                Some("complete") => return Ok(None),
                Some("error") => bail!("subscription error: {}", v["payload"]),
                Some("ping") => {
                    self.ws
                        .send(Message::text(json!({ "type": "pong" }).to_string()))
                        .await?;
                }
                _ => {}
            }
        }
    }
}

/// A PostgreSQL server started from the installed binaries, trust auth on 127.0.0.1.
pub struct TempPg {
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn pg_cmd(prog: &str) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", &format!("{PG_BIN}/{prog}")]);
        c
    } else {
        std::process::Command::new(format!("{PG_BIN}/{prog}"))
    }
}

impl TempPg {
    /// initdb (no fsync) + start on a free port.
    pub fn start() -> Result<Self> {
        let dir = temp_dir();
        let pgdata = dir.path().join("pgdata");
        std::fs::create_dir(&pgdata)?;
        std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700))?;
        if is_root() {
            let u = nix::unistd::User::from_name("postgres")?
                .ok_or_else(|| anyhow!("no postgres user"))?;
            std::os::unix::fs::chown(&pgdata, Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
            std::os::unix::fs::chown(dir.path(), Some(u.uid.as_raw()), Some(u.gid.as_raw()))?;
        }
        let out = pg_cmd("initdb")
            .args([
                "-N",
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "-D",
            ])
            .arg(&pgdata)
            .output()?;
        if !out.status.success() {
            bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off"
        );
        let out = pg_cmd("pg_ctl")
            .args(["start", "-w", "-D"])
            .arg(&pgdata)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-o")
            .arg(opts)
            .output()?;
        if !out.status.success() {
            bail!("pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self { port, dir })
    }

    /// A URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for TempPg {
    fn drop(&mut self) {
        let _ = pg_cmd("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("pgdata"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Connects to a Snapgres-managed instance with a password.
pub async fn connect(
    host: &str,
    port: u16,
    db: &str,
    password: &str,
) -> Result<sea_orm::sqlx::PgConnection> {
    use sea_orm::sqlx::Connection;
    let opts = sea_orm::sqlx::postgres::PgConnectOptions::new()
        .host(host)
        .port(port)
        .username("postgres")
        .password(password)
        .database(db);
    Ok(sea_orm::sqlx::PgConnection::connect_with(&opts).await?)
}

/// Every `/proc/*/cmdline` on the machine, joined (to check no secret is on a command line).
pub fn all_command_lines() -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Ok(bytes) = std::fs::read(e.path().join("cmdline")) {
                out.push_str(&String::from_utf8_lossy(&bytes).replace('\0', " "));
                out.push('\n');
            }
        }
    }
    out
}

/// True if `needle` occurs in any file under `dir`.
pub fn any_file_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Azurite (Azure Blob emulator) run by a test: `azurite-blob` from `SNAPGRES_AZURITE_BIN`, the
/// tools cache (`scripts/test` installs it there) or PATH.
pub struct Azurite {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The container Snapgres uses in tests.
pub const AZ_CONTAINER: &str = "snapgres-images";

fn azurite_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SNAPGRES_AZURITE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let tools = std::env::var("SNAPGRES_TOOLS_DIR")
        .unwrap_or_else(|_| format!("{home}/.cache/snapgres-tools"));
    let cached = PathBuf::from(tools).join("azurite/node_modules/.bin/azurite-blob");
    if cached.exists() {
        return Ok(cached);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("azurite-blob");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("azurite-blob not found: run scripts/test (it installs Azurite) or set SNAPGRES_AZURITE_BIN")
}

impl Azurite {
    /// Starts Azurite on a free port with a fresh storage directory.
    pub async fn start() -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut a = Self {
            child: None,
            port,
            dir: tempfile::tempdir()?,
        };
        a.resume().await?;
        Ok(a)
    }

    /// (Re)starts the process on the same port and storage directory.
    pub async fn resume(&mut self) -> Result<()> {
        let child = Command::new(azurite_bin()?)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.port.to_string(),
                "--location",
            ])
            .arg(self.dir.path())
            .args([
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting azurite-blob")?;
        self.child = Some(child);
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("Azurite did not listen within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops the process (an outage); storage is kept for [`Azurite::resume`]. SIGTERM, so
    /// Azurite saves its metadata (a SIGKILLed Azurite forgets its containers).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(15), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }

    /// Environment for a Snapgres server storing images here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "SNAPGRES_STORAGE_URL".into(),
                format!("az://{AZ_CONTAINER}"),
            ),
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
        ]
    }

    /// A client for the test's own checks (explicit settings, no environment).
    pub fn store(&self) -> Result<object_store::azure::MicrosoftAzure> {
        Ok(object_store::azure::MicrosoftAzureBuilder::new()
            .with_account("devstoreaccount1")
            .with_access_key("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
            .with_endpoint(format!("http://127.0.0.1:{}/devstoreaccount1", self.port))
            .with_allow_http(true)
            .with_container_name(AZ_CONTAINER)
            .build()?)
    }

    /// Every object key under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        use object_store::ObjectStore;
        let store = self.store()?;
        let p = object_store::path::Path::from(prefix);
        let mut s = store.list(Some(&p));
        let mut out = Vec::new();
        while let Some(m) = s.next().await {
            out.push(m?.location.to_string());
        }
        out.sort();
        Ok(out)
    }
}

/// Runs `snapgres serve` with owned environment pairs.
pub async fn start_with(data_dir: &Path, env: &[(String, String)]) -> Result<Server> {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(data_dir, &pairs).await
}
