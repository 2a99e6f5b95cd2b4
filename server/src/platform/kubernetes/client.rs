//! The Kubernetes platform: applies the rendered manifests with kube-rs. Names derive from the
//! instance and the task, creates are idempotent (an existing object means the step already did
//! it), every wait has a limit and a failure condition (a failed Job fails the step with its pod's
//! reason and log tail), Jobs are deleted on success and on failure, and deleting an instance
//! removes every object it had.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::render::{self, job_name, KubeSettings};
use crate::platform::{
    BackupSpec, Endpoint, Error, InstanceSpec, Platform, Progress, RestoreSpec, Result,
};
use crate::secrets::Password;
use crate::storage::{DatabaseEntry, Manifest, ObjectEntry, Storage};

/// Poll intervals and limits of the waits.
#[derive(Debug, Clone)]
pub struct Waits {
    pub poll: Duration,
    pub job: Duration,
    pub ready: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(2),
            job: Duration::from_secs(6 * 3600),
            ready: Duration::from_secs(600),
        }
    }
}

/// The Kubernetes platform.
#[derive(Clone)]
pub struct KubernetesPlatform {
    client: Client,
    settings: KubeSettings,
    storage: Storage,
    waits: Waits,
}

/// Decides, where a Kubernetes error happens, whether retrying can help.
pub fn classify(op: impl Into<String>, source: kube::Error) -> Error {
    let retryable = match &source {
        kube::Error::Api(s) => s.code == 429 || s.code == 409 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => true,
        _ => false,
    };
    Error::Kube {
        op: op.into(),
        retryable,
        source,
    }
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// What the backup Job writes to its termination message.
#[derive(Debug, serde::Deserialize)]
struct BackupReport {
    globals: ObjectEntry,
    databases: Vec<DatabaseEntry>,
}

impl KubernetesPlatform {
    /// Over a kube client (in-cluster/kubeconfig in production, a mock in tests).
    pub fn new(client: Client, settings: KubeSettings, storage: Storage, waits: Waits) -> Self {
        Self {
            client,
            settings,
            storage,
            waits,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    /// Creates `obj`; an object of that name that exists already counts as done.
    async fn create<K>(&self, obj: &K) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + Debug,
        K::DynamicType: Default,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        match self.api::<K>().create(&PostParams::default(), obj).await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, 409) => Ok(()),
            Err(e) => Err(classify(
                format!("creating {} {name}", K::kind(&Default::default())),
                e,
            )),
        }
    }

    /// Deletes an object; one that is not there counts as deleted.
    async fn delete<K>(&self, name: &str) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        match self
            .api::<K>()
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, 404) => Ok(()),
            Err(e) => Err(classify(
                format!("deleting {} {name}", K::kind(&Default::default())),
                e,
            )),
        }
    }

    /// The pod of a Job, if it has one yet.
    async fn job_pod(&self, job: &str) -> Result<Option<Pod>> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .map_err(|e| classify(format!("listing the pods of job {job}"), e))?;
        Ok(pods.items.into_iter().next())
    }

    /// Waits for a Job to complete; a failed Job is an error carrying its pod's reason, message
    /// and log tail; a Job still running after the limit is a timeout.
    async fn wait_job(&self, name: &str, limit: Duration) -> Result<Pod> {
        let start = Instant::now();
        loop {
            let job = self
                .api::<Job>()
                .get(name)
                .await
                .map_err(|e| classify(format!("reading job {name}"), e))?;
            let conds = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let done = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
            if done("Complete") {
                return self.job_pod(name).await?.ok_or_else(|| {
                    Error::JobFailed(format!("job {name} completed but its pod is gone"))
                });
            }
            if done("Failed") {
                return Err(Error::JobFailed(self.failure_report(name, &conds).await));
            }
            if start.elapsed() >= limit {
                return Err(Error::Timeout("the job", limit));
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    async fn failure_report(
        &self,
        name: &str,
        conds: &[k8s_openapi::api::batch::v1::JobCondition],
    ) -> String {
        let mut msg = format!("job {name} failed");
        if let Some(c) = conds.iter().find(|c| c.type_ == "Failed") {
            msg.push_str(&format!(
                " ({}: {})",
                c.reason.as_deref().unwrap_or("?"),
                c.message.as_deref().unwrap_or("")
            ));
        }
        if let Ok(Some(pod)) = self.job_pod(name).await {
            let term = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.terminated.as_ref());
            if let Some(t) = term {
                msg.push_str(&format!(
                    "; pod {}: {} (exit {})",
                    pod.metadata.name.as_deref().unwrap_or("?"),
                    t.reason.as_deref().unwrap_or("?"),
                    t.exit_code
                ));
                if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
                    msg.push_str(&format!(": {}", m.trim()));
                }
            }
            if let Some(pod_name) = pod.metadata.name.as_deref() {
                let lp = LogParams {
                    tail_lines: Some(20),
                    ..LogParams::default()
                };
                if let Ok(log) = self.api::<Pod>().logs(pod_name, &lp).await {
                    if !log.trim().is_empty() {
                        msg.push_str(&format!("; log tail:\n{}", log.trim_end()));
                    }
                }
            }
        }
        msg
    }

    /// Copies the last lines a Job's pod printed into the task log.
    async fn copy_job_log(&self, job: &str, progress: &Progress) {
        let Ok(Some(pod)) = self.job_pod(job).await else {
            return;
        };
        let Some(pod_name) = pod.metadata.name else {
            return;
        };
        let lp = LogParams {
            tail_lines: Some(200),
            ..LogParams::default()
        };
        if let Ok(log) = self.api::<Pod>().logs(&pod_name, &lp).await {
            for line in log.lines().filter(|l| !l.trim().is_empty()) {
                progress.log(format!("{job}: {line}"));
            }
        }
    }

    fn termination_message(pod: &Pod) -> Option<String> {
        pod.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .state
            .as_ref()?
            .terminated
            .as_ref()?
            .message
            .clone()
    }

    async fn instance_objects(
        &self,
        inst: &InstanceSpec,
        password: &Password,
    ) -> Result<render::InstanceObjects> {
        self.settings
            .instance(
                inst,
                Some(inst.dns_label.as_str()).filter(|l| !l.is_empty()),
                password,
            )
            .map_err(|e| Error::Manifest(e.to_string()))
    }

    async fn deploy(&self, inst: &InstanceSpec) -> Result<()> {
        // The Secret's content is not needed to render the workload objects.
        let o = self.instance_objects(inst, &Password::new("")).await?;
        self.create(&o.statefulset).await?;
        self.create(&o.service).await
    }
}

#[async_trait]
impl Platform for KubernetesPlatform {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn assign_port(&self) -> Result<u16> {
        Ok(self.settings.postgres_port)
    }

    async fn create_volume(&self, inst: &InstanceSpec) -> Result<()> {
        let o = self.instance_objects(inst, &Password::new("")).await?;
        self.create(&o.pvc).await
    }

    async fn create_secret(&self, inst: &InstanceSpec, password: &Password) -> Result<()> {
        self.create(&self.instance_objects(inst, password).await?.secret)
            .await
    }

    async fn create_config(&self, inst: &InstanceSpec, _password: &Password) -> Result<()> {
        self.create(
            &self
                .instance_objects(inst, &Password::new(""))
                .await?
                .configmap,
        )
        .await
    }

    async fn deploy_postgres(&self, inst: &InstanceSpec) -> Result<()> {
        self.deploy(inst).await
    }

    async fn deploy_postgres_from_volume(&self, inst: &InstanceSpec) -> Result<()> {
        self.deploy(inst).await
    }

    async fn wait_ready(
        &self,
        inst: &InstanceSpec,
        _password: &Password,
        timeout: Duration,
    ) -> Result<()> {
        let start = Instant::now();
        let limit = timeout.min(self.waits.ready);
        loop {
            let sts = self
                .api::<StatefulSet>()
                .get(&inst.k8s_name)
                .await
                .map_err(|e| classify(format!("reading statefulset {}", inst.k8s_name), e))?;
            if sts
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
                >= 1
            {
                return Ok(());
            }
            // A pod that cannot start will not become ready by waiting.
            let pods = self
                .api::<Pod>()
                .list(
                    &ListParams::default()
                        .labels(&format!("snapgres.io/instance={}", inst.k8s_name)),
                )
                .await
                .map_err(|e| classify("listing instance pods", e))?;
            for p in pods.items {
                for cs in p
                    .status
                    .and_then(|s| s.container_statuses)
                    .unwrap_or_default()
                {
                    if let Some(w) = cs.state.and_then(|s| s.waiting) {
                        let reason = w.reason.unwrap_or_default();
                        if matches!(
                            reason.as_str(),
                            "CrashLoopBackOff"
                                | "ImagePullBackOff"
                                | "ErrImagePull"
                                | "CreateContainerConfigError"
                                | "InvalidImageName"
                        ) {
                            return Err(Error::JobFailed(format!(
                                "PostgreSQL pod cannot start: {reason}: {}",
                                w.message.unwrap_or_default()
                            )));
                        }
                    }
                }
            }
            if start.elapsed() >= limit {
                return Err(Error::Timeout("PostgreSQL readiness", limit));
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    async fn endpoint(&self, inst: &InstanceSpec) -> Result<Endpoint> {
        let svc = self
            .api::<Service>()
            .get(&inst.k8s_name)
            .await
            .map_err(|e| classify(format!("reading service {}", inst.k8s_name), e))?;
        let lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let host = if lb {
            let ingress = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|l| l.ingress.as_ref())
                .and_then(|i| i.first());
            match ingress.and_then(|i| i.hostname.clone().or_else(|| i.ip.clone())) {
                Some(h) => h,
                None => {
                    return Err(Error::NotReady(format!(
                        "the load balancer of {} has no address yet",
                        inst.k8s_name
                    )))
                }
            }
        } else {
            format!(
                "{}.{}.svc.cluster.local",
                inst.k8s_name, self.settings.namespace
            )
        };
        Ok(Endpoint {
            host,
            port: self.settings.postgres_port,
            user: "postgres".into(),
            database: "postgres".into(),
        })
    }

    async fn test_connection(
        &self,
        ep: &Endpoint,
        password: &Password,
        timeout: Duration,
    ) -> Result<()> {
        crate::platform::select_one(ep, password, timeout).await
    }

    async fn run_backup(
        &self,
        spec: &BackupSpec,
        progress: Progress,
    ) -> Result<(Manifest, String)> {
        let source = InstanceSpec {
            id: uuid::Uuid::nil(),
            k8s_name: spec.source_name.clone(),
            dns_label: String::new(),
            port: self.settings.postgres_port,
            postgres_version: spec.postgres_version.clone(),
            image_type: spec.image_type,
            storage_size_gb: 1,
        };
        let job = self
            .settings
            .backup_job(spec.task_id, &source, spec.image_id)
            .map_err(|e| Error::Manifest(e.to_string()))?;
        let name = job.metadata.name.clone().unwrap_or_default();
        self.create(&job).await?;
        let waited = self.wait_job(&name, self.waits.job).await;
        self.copy_job_log(&name, &progress).await;
        // The Job goes on both paths; its outcome is already read.
        let deleted = self.delete::<Job>(&name).await;
        let pod = waited?;
        deleted?;
        let msg = Self::termination_message(&pod)
            .ok_or_else(|| Error::JobFailed(format!("job {name} left no termination message")))?;
        let report: BackupReport = serde_json::from_str(&msg)
            .map_err(|e| Error::JobFailed(format!("job {name} reported {msg:?}: {e}")))?;
        let prefix = format!("{}/", spec.keys.prefix());
        for o in std::iter::once(&report.globals).chain(report.databases.iter().map(|d| &d.object))
        {
            if !o.key.starts_with(&prefix) || o.sha256.len() != 64 {
                return Err(Error::JobFailed(format!(
                    "job {name} reported an object outside the image: {}",
                    o.key
                )));
            }
        }
        let (manifest, sha256) =
            crate::platform::write_manifest(&self.storage, spec, report.globals, report.databases)
                .await?;
        let total = manifest.total_size();
        progress.send_replace((total, Some(total)));
        Ok((manifest, sha256))
    }

    async fn start_restore_job(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        _progress: Progress,
    ) -> Result<()> {
        // The Job reads the password from the instance's Secret and the settings from nothing
        // else; both the Secret and the ConfigMap exist before it starts.
        let o = self.instance_objects(inst, &spec.password).await?;
        self.create(&o.secret).await?;
        self.create(&o.configmap).await?;
        let job = self
            .settings
            .restore_job(spec.task_id, inst, spec.image_id, &spec.manifest_sha256)
            .map_err(|e| Error::Manifest(e.to_string()))?;
        self.create(&job).await
    }

    async fn wait_restore_job(
        &self,
        inst: &InstanceSpec,
        spec: &RestoreSpec,
        progress: Progress,
        timeout: Duration,
    ) -> Result<()> {
        let name = job_name(&inst.k8s_name, "run_restore_job", spec.task_id);
        let waited = self.wait_job(&name, timeout.min(self.waits.job)).await;
        self.copy_job_log(&name, &progress).await;
        let deleted = self.delete::<Job>(&name).await;
        waited?;
        deleted
    }

    async fn stop_postgres(&self, inst: &InstanceSpec) -> Result<()> {
        self.delete::<StatefulSet>(&inst.k8s_name).await
    }

    async fn delete_resources(&self, inst: &InstanceSpec) -> Result<()> {
        let jobs = self
            .api::<Job>()
            .list(&ListParams::default().labels(&format!("snapgres.io/instance={}", inst.k8s_name)))
            .await
            .map_err(|e| classify("listing the instance's jobs", e))?;
        for j in jobs.items {
            if let Some(n) = j.metadata.name {
                self.delete::<Job>(&n).await?;
            }
        }
        self.delete::<StatefulSet>(&inst.k8s_name).await?;
        self.delete::<Service>(&inst.k8s_name).await?;
        self.delete::<ConfigMap>(&render::config_name(&inst.k8s_name))
            .await?;
        self.delete::<Secret>(&render::secret_name(&inst.k8s_name))
            .await?;
        self.delete::<PersistentVolumeClaim>(&render::pvc_name(&inst.k8s_name))
            .await
    }

    async fn ensure_running(&self, _inst: &InstanceSpec) -> Result<()> {
        // The StatefulSet controller keeps PostgreSQL running; nothing to restart.
        Ok(())
    }
}
