//! The local platform: every instance is a PostgreSQL cluster this server runs from the installed
//! binaries (initdb/pg_ctl), on 127.0.0.1 and a free port, with SCRAM authentication, as a non-root
//! OS user when the server runs as root. Backups and restores are pg_dump/pg_restore processes.
//!
//! Layout: `{data_dir}/instances/{k8s_name}/` holds `pgdata/`, `postgres.log`, and during a
//! restore `staging/` (downloaded, verified objects) and `restore-job.json` (the job's outcome).

use std::collections::HashMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use sea_orm::sqlx::{Connection, Row};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::{
    connect, BackupSpec, Endpoint, Error, InstanceSpec, Platform, Progress, RestoreSpec, Result,
};
use crate::process::{Cmd, RunAs};
use crate::secrets::Password;
use crate::storage::{DatabaseEntry, ImageKeys, Manifest, ObjectEntry, Storage};

/// Settings of the local platform.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub data_dir: PathBuf,
    pub pg_bin_dir: PathBuf,
    /// OS user for PostgreSQL when this process is root.
    pub run_as: String,
    pub restore_jobs: usize,
    pub dump_compression: u8,
}

/// The local platform.
#[derive(Clone)]
pub struct LocalPlatform {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    bin: PathBuf,
    run_as: Option<RunAs>,
    storage: Storage,
    restore_jobs: usize,
    dump_compression: u8,
    jobs: Mutex<HashMap<String, JoinHandle<Result<()>>>>,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.display().to_string();
    move |source| Error::Io { what, path, source }
}

/// What `restore-job.json` records.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct JobStatus {
    manifest_sha256: String,
    ok: bool,
    error: Option<String>,
}

/// What `staging/verified.json` records: the objects below were checked against this manifest.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Verified {
    manifest_sha256: String,
    manifest: Manifest,
}

impl LocalPlatform {
    /// Prepares `{data_dir}/instances` (reachable by the PostgreSQL OS user).
    pub fn new(cfg: LocalConfig, storage: Storage) -> Result<Self> {
        let run_as = if nix::unistd::Uid::effective().is_root() {
            let user = nix::unistd::User::from_name(&cfg.run_as)
                .ok()
                .flatten()
                .ok_or_else(|| Error::NoSuchUser(cfg.run_as.clone()))?;
            Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })
        } else {
            None
        };
        let root = cfg.data_dir.join("instances");
        std::fs::create_dir_all(&root).map_err(io("creating the instances directory", &root))?;
        if run_as.is_some() {
            // The PostgreSQL user must be able to pass through (not list) these directories.
            for d in [&cfg.data_dir, &root] {
                let mut p = std::fs::metadata(d)
                    .map_err(io("reading", d))?
                    .permissions();
                p.set_mode(p.mode() | 0o111);
                std::fs::set_permissions(d, p).map_err(io("setting permissions of", d))?;
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                bin: cfg.pg_bin_dir,
                run_as,
                storage,
                restore_jobs: cfg.restore_jobs.max(1),
                dump_compression: cfg.dump_compression.min(9),
                jobs: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The instance's directory.
    pub fn instance_dir(&self, inst: &InstanceSpec) -> PathBuf {
        self.inner.root.join(&inst.k8s_name)
    }

    fn pgdata(&self, inst: &InstanceSpec) -> PathBuf {
        self.instance_dir(inst).join("pgdata")
    }

    /// A client program (pg_dump, psql, …), run as this process's user.
    fn client(&self, prog: &str) -> Cmd {
        Cmd::new(self.inner.bin.join(prog))
    }

    /// A server program (initdb, pg_ctl), run as the PostgreSQL OS user.
    fn server(&self, prog: &str) -> Cmd {
        Cmd::new(self.inner.bin.join(prog)).run_as(self.inner.run_as)
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if let Some(who) = self.inner.run_as {
            std::os::unix::fs::chown(path, Some(who.uid), Some(who.gid))
                .map_err(io("changing the owner of", path))?;
        }
        Ok(())
    }

    async fn mkdir_owned(&self, path: &Path) -> Result<()> {
        tokio::fs::create_dir_all(path)
            .await
            .map_err(io("creating", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(io("setting permissions of", path))?;
        self.chown(path)
    }

    async fn is_running(&self, inst: &InstanceSpec) -> bool {
        let pgdata = self.pgdata(inst);
        if !pgdata.join("PG_VERSION").exists() {
            return false;
        }
        self.server("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&pgdata)
            .timeout(Duration::from_secs(30))
            .run()
            .await
            .is_ok()
    }

    /// Runs initdb with the password in a 0600 file (deleted afterwards), unless already done.
    async fn initdb(&self, inst: &InstanceSpec, password: &Password) -> Result<()> {
        let dir = self.instance_dir(inst);
        let pgdata = self.pgdata(inst);
        if pgdata.join("PG_VERSION").exists() && pgdata.join("postgresql.conf").exists() {
            return Ok(());
        }
        if pgdata.exists() {
            // A half-made cluster from an interrupted attempt: start over.
            tokio::fs::remove_dir_all(&pgdata)
                .await
                .map_err(io("removing", &pgdata))?;
        }
        self.mkdir_owned(&dir).await?;
        let pwfile = dir.join(".pwfile");
        {
            let _ = std::fs::remove_file(&pwfile);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pwfile)
                .map_err(io("writing", &pwfile))?;
            std::io::Write::write_all(&mut f, password.expose().as_bytes())
                .map_err(io("writing", &pwfile))?;
        }
        self.chown(&pwfile)?;
        let res = self
            .server("initdb")
            .arg("-D")
            .arg(&pgdata)
            .args([
                "-U",
                "postgres",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .timeout(Duration::from_secs(300))
            .run()
            .await;
        let _ = std::fs::remove_file(&pwfile);
        res?;
        Ok(())
    }

    /// Writes `snapgres.conf` (port, loopback only, no socket) and includes it from postgresql.conf.
    /// `bulk_load` adds settings that make a restore faster and are safe only because the cluster
    /// is stopped cleanly and synced before anyone uses it.
    async fn write_conf(&self, inst: &InstanceSpec, bulk_load: bool) -> Result<()> {
        let pgdata = self.pgdata(inst);
        let mut conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n",
            inst.port
        );
        if bulk_load {
            conf.push_str("fsync = off\nfull_page_writes = off\nwal_level = minimal\nmax_wal_senders = 0\nsynchronous_commit = off\nautovacuum = off\nmaintenance_work_mem = '256MB'\n");
        }
        let path = pgdata.join("snapgres.conf");
        tokio::fs::write(&path, conf)
            .await
            .map_err(io("writing", &path))?;
        self.chown(&path)?;
        let main = pgdata.join("postgresql.conf");
        let text = tokio::fs::read_to_string(&main)
            .await
            .map_err(io("reading", &main))?;
        if !text.contains("include_if_exists = 'snapgres.conf'") {
            let text = format!("{text}\ninclude_if_exists = 'snapgres.conf'\n");
            tokio::fs::write(&main, text)
                .await
                .map_err(io("writing", &main))?;
        }
        Ok(())
    }

    async fn start(&self, inst: &InstanceSpec) -> Result<()> {
        if self.is_running(inst).await {
            return Ok(());
        }
        let dir = self.instance_dir(inst);
        self.server("pg_ctl")
            .args(["start", "-w", "-t", "120", "-D"])
            .arg(self.pgdata(inst))
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .timeout(Duration::from_secs(150))
            .run()
            .await?;
        Ok(())
    }

    async fn stop(&self, inst: &InstanceSpec) -> Result<()> {
        if !self.is_running(inst).await {
            return Ok(());
        }
        self.server("pg_ctl")
            .args(["stop", "-w", "-t", "120", "-m", "fast", "-D"])
            .arg(self.pgdata(inst))
            .timeout(Duration::from_secs(150))
            .run()
            .await?;
        Ok(())
    }

    fn endpoint_for(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            user: "postgres".into(),
            database: "postgres".into(),
        }
    }

    /// Downloads every object of the image into `staging/`, checking each sha256 against the
    /// manifest (itself checked against the image's recorded checksum). Nothing is used before
    /// every object has passed.
    async fn download_and_verify(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        progress: &Progress,
    ) -> Result<Manifest> {
        let staging = self.instance_dir(inst).join("staging");
        let marker = staging.join("verified.json");
        if let Ok(bytes) = tokio::fs::read(&marker).await {
            if let Ok(v) = serde_json::from_slice::<Verified>(&bytes) {
                if v.manifest_sha256 == spec.manifest_sha256 {
                    let total = v.manifest.total_size();
                    progress.send_replace((total, Some(total)));
                    return Ok(v.manifest);
                }
            }
        }
        let _ = tokio::fs::remove_dir_all(&staging).await;
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(io("creating", &staging))?;
        let st = &self.inner.storage;
        let mkey = spec.keys.manifest();
        let raw = st.get_bytes(&mkey).await?;
        let actual = hex::encode(Sha256::digest(&raw));
        if actual != spec.manifest_sha256 {
            return Err(Error::Checksum {
                key: mkey.to_string(),
                expected: spec.manifest_sha256.clone(),
                actual,
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(&raw).map_err(|e| Error::Manifest(e.to_string()))?;
        if manifest.image_id != spec.image_id {
            return Err(Error::Manifest(format!(
                "it belongs to image {}, not {}",
                manifest.image_id, spec.image_id
            )));
        }
        let prefix = format!("{}/", spec.keys.prefix());
        let objects: Vec<&ObjectEntry> = std::iter::once(&manifest.globals)
            .chain(manifest.databases.iter().map(|d| &d.object))
            .collect();
        if let Some(bad) = objects
            .iter()
            .find(|o| !o.key.starts_with(&prefix) || o.key.contains(".."))
        {
            return Err(Error::Manifest(format!(
                "object key {} is outside the image",
                bad.key
            )));
        }
        let total = manifest.total_size();
        let mut done = 0u64;
        progress.send_replace((0, Some(total)));
        for (i, o) in objects.iter().enumerate() {
            let dest = staging.join(format!("{i:04}"));
            let base = done;
            let t = st
                .get_to_file(
                    &object_store::path::Path::from(o.key.as_str()),
                    &dest,
                    |n| {
                        progress.send_replace((base + n, Some(total)));
                    },
                )
                .await?;
            if t.sha256 != o.sha256 || t.size != o.size {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return Err(Error::Checksum {
                    key: o.key.clone(),
                    expected: o.sha256.clone(),
                    actual: t.sha256,
                });
            }
            done += t.size;
        }
        let v = Verified {
            manifest_sha256: spec.manifest_sha256.clone(),
            manifest: manifest.clone(),
        };
        let bytes = serde_json::to_vec(&v).map_err(|e| Error::Manifest(e.to_string()))?;
        tokio::fs::write(&marker, bytes)
            .await
            .map_err(io("writing", &marker))?;
        progress.send_replace((total, Some(total)));
        Ok(manifest)
    }

    /// The restore job proper: a new cluster from the verified staging files.
    async fn apply_restore(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        manifest: &Manifest,
    ) -> Result<()> {
        let dir = self.instance_dir(inst);
        let staging = dir.join("staging");
        let pgdata = self.pgdata(inst);
        self.stop(inst).await?;
        if pgdata.exists() {
            tokio::fs::remove_dir_all(&pgdata)
                .await
                .map_err(io("removing", &pgdata))?;
        }
        self.initdb(inst, &spec.password).await?;
        self.write_conf(inst, true).await?;
        self.start(inst).await?;
        let ep = Self::endpoint_for(inst.port);
        let result = self.load(&ep, spec, manifest, &staging).await;
        // Back to safe settings, clean shutdown, and flush everything written with fsync off.
        self.write_conf(inst, false).await?;
        self.stop(inst).await?;
        result?;
        Cmd::new("/bin/sync")
            .arg("-f")
            .arg(&pgdata)
            .timeout(Duration::from_secs(600))
            .run()
            .await?;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        Ok(())
    }

    async fn load(
        &self,
        ep: &Endpoint,
        spec: &RestoreSpec,
        manifest: &Manifest,
        staging: &Path,
    ) -> Result<()> {
        let port = ep.port.to_string();
        let pw = spec.password.expose();
        // Globals: every role with its attributes and memberships. The bootstrap superuser exists
        // already (initdb made it), so its CREATE is dropped; its ALTER (password included) stays.
        let globals_path = staging.join("0000");
        let globals = tokio::fs::read_to_string(&globals_path)
            .await
            .map_err(io("reading", &globals_path))?;
        let filtered: String = globals
            .lines()
            .filter(|l| l.trim() != "CREATE ROLE postgres;")
            .map(|l| format!("{l}\n"))
            .collect();
        let filtered_path = staging.join("globals.sql");
        tokio::fs::write(&filtered_path, filtered)
            .await
            .map_err(io("writing", &filtered_path))?;
        self.client("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &ep.host,
                "-p",
                &port,
                "-U",
                &ep.user,
                "-d",
                "postgres",
                "-f",
            ])
            .arg(&filtered_path)
            .env("PGPASSWORD", pw)
            .run()
            .await?;
        // Every database is restored with --create, so its own properties (owner, encoding,
        // locale, comment, privileges, settings) come back too; the empty `postgres` database
        // initdb made is dropped first when the image has one.
        if manifest.databases.iter().any(|d| d.name == "postgres") {
            self.client("psql")
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    &ep.host,
                    "-p",
                    &port,
                    "-U",
                    &ep.user,
                    "-d",
                    "template1",
                    "-c",
                    "DROP DATABASE postgres",
                ])
                .env("PGPASSWORD", pw)
                .run()
                .await?;
        }
        let jobs = self.inner.restore_jobs.to_string();
        for (i, _db) in manifest.databases.iter().enumerate() {
            let file = staging.join(format!("{:04}", i + 1));
            self.client("pg_restore")
                .args([
                    "--create",
                    "--exit-on-error",
                    "-j",
                    &jobs,
                    "-h",
                    &ep.host,
                    "-p",
                    &port,
                    "-U",
                    &ep.user,
                    "-d",
                    "template1",
                ])
                .arg(&file)
                .env("PGPASSWORD", pw)
                .timeout(Duration::from_secs(6 * 3600))
                .run()
                .await?;
        }
        Ok(())
    }

    async fn run_job(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        progress: &Progress,
    ) -> Result<()> {
        let status_path = self.instance_dir(inst).join("restore-job.json");
        let result = async {
            let manifest = self.download_and_verify(inst, spec, progress).await?;
            self.apply_restore(inst, spec, &manifest).await
        }
        .await;
        let status = JobStatus {
            manifest_sha256: spec.manifest_sha256.clone(),
            ok: result.is_ok(),
            error: result.as_ref().err().map(|e| e.to_string()),
        };
        if let Ok(bytes) = serde_json::to_vec(&status) {
            let _ = tokio::fs::write(&status_path, bytes).await;
        }
        result
    }
}

#[async_trait]
impl Platform for LocalPlatform {
    fn name(&self) -> &'static str {
        "local"
    }

    fn assign_port(&self) -> Result<u16> {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::NoPort)?;
        Ok(l.local_addr().map_err(Error::NoPort)?.port())
    }

    async fn create_volume(&self, inst: &InstanceSpec) -> Result<()> {
        self.mkdir_owned(&self.instance_dir(inst)).await
    }

    async fn create_secret(&self, inst: &InstanceSpec, _password: &Password) -> Result<()> {
        // Locally the password reaches initdb through a 0600 file that create_config writes and
        // removes; at rest it exists only encrypted in the CMS database. Nothing to do but check
        // the volume is there.
        let dir = self.instance_dir(inst);
        tokio::fs::metadata(&dir)
            .await
            .map_err(io("checking the instance directory", &dir))?;
        Ok(())
    }

    async fn create_config(&self, inst: &InstanceSpec, password: &Password) -> Result<()> {
        self.initdb(inst, password).await?;
        self.write_conf(inst, false).await
    }

    async fn deploy_postgres(&self, inst: &InstanceSpec) -> Result<()> {
        self.write_conf(inst, false).await?;
        self.start(inst).await
    }

    async fn deploy_postgres_from_volume(&self, inst: &InstanceSpec) -> Result<()> {
        let pgdata = self.pgdata(inst);
        if !pgdata.join("PG_VERSION").exists() {
            return Err(Error::JobFailed(format!(
                "no restored cluster in {}",
                pgdata.display()
            )));
        }
        self.write_conf(inst, false).await?;
        self.start(inst).await
    }

    async fn wait_ready(
        &self,
        inst: &InstanceSpec,
        password: &Password,
        timeout: Duration,
    ) -> Result<()> {
        let ep = Self::endpoint_for(inst.port);
        let start = Instant::now();
        loop {
            match connect(&ep, password).await {
                Ok(c) => {
                    let _ = c.close().await;
                    return Ok(());
                }
                Err(e) if start.elapsed() >= timeout => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn endpoint(&self, inst: &InstanceSpec) -> Result<Endpoint> {
        Ok(Self::endpoint_for(inst.port))
    }

    async fn test_connection(
        &self,
        ep: &Endpoint,
        password: &Password,
        timeout: Duration,
    ) -> Result<()> {
        super::select_one(ep, password, timeout).await
    }

    async fn run_backup(
        &self,
        spec: &BackupSpec,
        progress: Progress,
    ) -> Result<(Manifest, String)> {
        let st = &self.inner.storage;
        // Objects an interrupted earlier attempt left behind go first.
        st.delete_prefix(&spec.keys.prefix()).await?;
        let ep = &spec.source;
        let mut conn = connect(ep, &spec.password).await?;
        let rows = sea_orm::sqlx::query("SELECT datname::text AS name, pg_database_size(oid) AS size FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname")
            .fetch_all(&mut conn)
            .await
            .map_err(|source| Error::Query { endpoint: ep.to_string(), source })?;
        let _ = conn.close().await;
        let mut dbs = Vec::new();
        for r in rows {
            let name: String = r.try_get("name").map_err(|source| Error::Query {
                endpoint: ep.to_string(),
                source,
            })?;
            let size: i64 = r.try_get("size").map_err(|source| Error::Query {
                endpoint: ep.to_string(),
                source,
            })?;
            dbs.push((name, size.max(0) as u64));
        }
        let estimate: u64 = dbs.iter().map(|d| d.1).sum();
        progress.send_replace((0, Some(estimate)));
        let port = ep.port.to_string();
        let pw = spec.password.expose();
        let globals_sql = self
            .client("pg_dumpall")
            .args([
                "--globals-only",
                "-h",
                &ep.host,
                "-p",
                &port,
                "-U",
                &ep.user,
                "-l",
                &ep.database,
            ])
            .env("PGPASSWORD", pw)
            .run()
            .await?;
        let gkey = spec.keys.globals();
        let g = st.put_bytes(&gkey, Bytes::from(globals_sql)).await?;
        let mut done = g.size;
        let globals = ObjectEntry {
            key: gkey.to_string(),
            size: g.size,
            sha256: g.sha256,
        };
        let level = self.inner.dump_compression.to_string();
        let mut databases = Vec::new();
        for (i, (name, _)) in dbs.iter().enumerate() {
            let mut child = self
                .client("pg_dump")
                .args([
                    "-Fc",
                    "--create",
                    "-Z",
                    &level,
                    "--no-password",
                    "-h",
                    &ep.host,
                    "-p",
                    &port,
                    "-U",
                    &ep.user,
                ])
                .env("PGPASSWORD", pw)
                .env("PGDATABASE", name)
                .timeout(Duration::from_secs(6 * 3600))
                .spawn()?;
            let Some(stdout) = child.stdout() else {
                child.kill().await;
                return Err(Error::JobFailed("pg_dump has no stdout".into()));
            };
            let key = ImageKeys::database(&spec.keys, i);
            let base = done;
            let up = st
                .put_stream(&key, stdout, |n| {
                    progress.send_replace((base + n, Some(estimate.max(base + n))));
                })
                .await;
            let t = match up {
                Ok(t) => t,
                Err(e) => {
                    child.kill().await;
                    return Err(e.into());
                }
            };
            child.finish().await?;
            done += t.size;
            databases.push(DatabaseEntry {
                name: name.clone(),
                object: ObjectEntry {
                    key: key.to_string(),
                    size: t.size,
                    sha256: t.sha256,
                },
            });
        }
        let written = super::write_manifest(st, spec, globals, databases).await?;
        progress.send_replace((done, Some(done)));
        Ok(written)
    }

    async fn start_restore_job(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        progress: Progress,
    ) -> Result<()> {
        // The download-and-verify phase runs here, so a corrupt image fails this step before
        // anything is restored; the job then builds the cluster from the checked files.
        let manifest = self.download_and_verify(inst, spec, &progress).await?;
        let _ = tokio::fs::remove_file(self.instance_dir(inst).join("restore-job.json")).await;
        let mut jobs = self.inner.jobs.lock().await;
        if let Some(old) = jobs.remove(&inst.k8s_name) {
            old.abort();
        }
        let me = self.clone();
        let (inst2, spec2) = (inst.clone(), spec.clone());
        jobs.insert(
            inst.k8s_name.clone(),
            tokio::spawn(async move {
                let status_path = me.instance_dir(&inst2).join("restore-job.json");
                let r = me.apply_restore(&inst2, &spec2, &manifest).await;
                let status = JobStatus {
                    manifest_sha256: spec2.manifest_sha256.clone(),
                    ok: r.is_ok(),
                    error: r.as_ref().err().map(|e| e.to_string()),
                };
                if let Ok(bytes) = serde_json::to_vec(&status) {
                    let _ = tokio::fs::write(&status_path, bytes).await;
                }
                r
            }),
        );
        Ok(())
    }

    async fn wait_restore_job(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        progress: Progress,
        timeout: Duration,
    ) -> Result<()> {
        let handle = self.inner.jobs.lock().await.remove(&inst.k8s_name);
        let status_path = self.instance_dir(inst).join("restore-job.json");
        match handle {
            Some(mut h) => match tokio::time::timeout(timeout, &mut h).await {
                Err(_) => {
                    h.abort();
                    Err(Error::Timeout("the restore job", timeout))
                }
                Ok(Err(join)) => Err(Error::JobFailed(format!("the restore job stopped: {join}"))),
                Ok(Ok(r)) => r,
            },
            None => {
                if let Ok(bytes) = tokio::fs::read(&status_path).await {
                    if let Ok(s) = serde_json::from_slice::<JobStatus>(&bytes) {
                        if s.manifest_sha256 == spec.manifest_sha256 {
                            return if s.ok {
                                Ok(())
                            } else {
                                Err(Error::JobFailed(s.error.unwrap_or_default()))
                            };
                        }
                    }
                }
                // The job died with an earlier server process: run it again (it is idempotent).
                tokio::time::timeout(timeout, self.run_job(inst, spec, &progress))
                    .await
                    .map_err(|_| Error::Timeout("the restore job", timeout))?
            }
        }
    }

    async fn stop_postgres(&self, inst: &InstanceSpec) -> Result<()> {
        self.stop(inst).await
    }

    async fn delete_resources(&self, inst: &InstanceSpec) -> Result<()> {
        if let Some(h) = self.inner.jobs.lock().await.remove(&inst.k8s_name) {
            h.abort();
        }
        self.stop(inst).await?;
        let dir = self.instance_dir(inst);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io {
                what: "removing",
                path: dir.display().to_string(),
                source,
            }),
        }
    }

    async fn ensure_running(&self, inst: &InstanceSpec) -> Result<()> {
        self.write_conf(inst, false).await?;
        self.start(inst).await
    }
}
