//! Rendering `templates/*.yaml` into typed objects. Every `{{ key }}` is replaced by the value as
//! a JSON string (a valid, quoted YAML scalar, so no value can change the document's structure);
//! values never enter the Jobs' scripts, which read them from environment variables. Optional
//! parts (storage class, LoadBalancer and its DNS-label annotation) are set on the typed objects.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::platform::InstanceSpec;
use crate::secrets::Password;
use crate::storage::ImageKeys;

/// Errors of rendering.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("template {template} has no value for {{{{ {key} }}}}")]
    MissingValue { template: &'static str, key: String },
    #[error("template {template} does not render to a valid object")]
    Parse {
        template: &'static str,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("serialising a manifest")]
    Serialize(#[source] serde_yaml::Error),
    #[error("writing {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where and how the platform runs things (all configuration).
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub namespace: String,
    pub postgres_image: String,
    /// PostgreSQL 15 client tools + azcopy + jq (backup and restore Jobs).
    pub tools_image: String,
    pub server_image: String,
    pub storage_class: Option<String>,
    pub service_account: String,
    /// Client id of the managed identity (workload identity annotation).
    pub client_id: String,
    pub storage_account: String,
    pub container: String,
    pub job_deadline: Duration,
    pub dump_compression: u8,
    pub restore_jobs: usize,
    /// Port the instances' Services expose.
    pub postgres_port: u16,
}

impl KubeSettings {
    /// From the command line / environment.
    pub fn from_config(k: &crate::config::KubeConfig) -> Self {
        Self {
            namespace: k.k8s_namespace.clone(),
            postgres_image: k.k8s_postgres_image.clone(),
            tools_image: k.k8s_tools_image.clone(),
            server_image: k.k8s_server_image.clone(),
            storage_class: k.k8s_storage_class.clone(),
            service_account: k.k8s_service_account.clone(),
            client_id: k.azure_client_id.clone(),
            storage_account: k.k8s_storage_account.clone(),
            container: k.k8s_container.clone(),
            ..Self::default()
        }
    }
}

impl Default for KubeSettings {
    fn default() -> Self {
        Self {
            namespace: "snapgres".into(),
            postgres_image: "postgres:15".into(),
            tools_image: "ghcr.io/example/snapgres-tools:15".into(),
            server_image: "ghcr.io/example/snapgres:latest".into(),
            storage_class: None,
            service_account: "snapgres".into(),
            client_id: "00000000-0000-0000-0000-000000000000".into(),
            storage_account: "examplestorage".into(),
            container: "snapgres-images".into(),
            job_deadline: Duration::from_secs(6 * 3600),
            dump_compression: 1,
            restore_jobs: 2,
            postgres_port: 5432,
        }
    }
}

const PVC: (&str, &str) = ("pvc.yaml", include_str!("../../../../templates/pvc.yaml"));
const SECRET: (&str, &str) = (
    "secret.yaml",
    include_str!("../../../../templates/secret.yaml"),
);
const CONFIGMAP: (&str, &str) = (
    "configmap.yaml",
    include_str!("../../../../templates/configmap.yaml"),
);
const STATEFULSET: (&str, &str) = (
    "statefulset.yaml",
    include_str!("../../../../templates/statefulset.yaml"),
);
const SERVICE: (&str, &str) = (
    "service.yaml",
    include_str!("../../../../templates/service.yaml"),
);
const BACKUP_JOB: (&str, &str) = (
    "backup-job.yaml",
    include_str!("../../../../templates/backup-job.yaml"),
);
const RESTORE_JOB: (&str, &str) = (
    "restore-job.yaml",
    include_str!("../../../../templates/restore-job.yaml"),
);
const SERVER_DEPLOYMENT: (&str, &str) = (
    "server/deployment.yaml",
    include_str!("../../../../templates/server/deployment.yaml"),
);
const SERVER_SA: (&str, &str) = (
    "server/serviceaccount.yaml",
    include_str!("../../../../templates/server/serviceaccount.yaml"),
);
const SERVER_ROLE: (&str, &str) = (
    "server/role.yaml",
    include_str!("../../../../templates/server/role.yaml"),
);
const SERVER_BINDING: (&str, &str) = (
    "server/rolebinding.yaml",
    include_str!("../../../../templates/server/rolebinding.yaml"),
);
const SERVER_CONFIG: (&str, &str) = (
    "server/configmap.yaml",
    include_str!("../../../../templates/server/configmap.yaml"),
);

type Vars = BTreeMap<&'static str, String>;

/// Substitutes `{{ key }}` placeholders with JSON-quoted values and parses the typed object.
fn render<T: DeserializeOwned>(t: (&'static str, &str), vars: &Vars) -> Result<T, Error> {
    let (template, text) = t;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| Error::MissingValue {
            template,
            key: after.chars().take(20).collect(),
        })?;
        let key = after[..end].trim();
        let value = vars.get(key).ok_or_else(|| Error::MissingValue {
            template,
            key: key.to_owned(),
        })?;
        out.push_str(&serde_json::Value::String(value.clone()).to_string());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    serde_yaml::from_str(&out).map_err(|source| Error::Parse { template, source })
}

/// A name for a Job: derived from the instance, the step and the task id, so a re-run of the
/// same step finds the Job it created before; at most 63 characters.
pub fn job_name(instance: &str, step: &str, task_id: Uuid) -> String {
    let suffix = format!(
        "-{}-{}",
        step.replace('_', "-"),
        &task_id.simple().to_string()[..8]
    );
    let keep = 63usize.saturating_sub(suffix.len());
    let base: String = instance.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

/// Object names of an instance.
pub fn pvc_name(inst: &str) -> String {
    format!("{inst}-data")
}
/// The instance's Secret.
pub fn secret_name(inst: &str) -> String {
    format!("{inst}-credentials")
}
/// The instance's ConfigMap.
pub fn config_name(inst: &str) -> String {
    format!("{inst}-config")
}

/// Everything applied for one instance.
#[derive(Debug, Clone)]
pub struct InstanceObjects {
    pub pvc: PersistentVolumeClaim,
    pub secret: Secret,
    pub configmap: ConfigMap,
    pub statefulset: StatefulSet,
    pub service: Service,
}

/// A rendered file: its relative path and YAML.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub path: String,
    pub yaml: String,
}

impl KubeSettings {
    fn base(&self) -> Vars {
        let mut v = Vars::new();
        v.insert("namespace", self.namespace.clone());
        v.insert("service_account", self.service_account.clone());
        v.insert("storage_account", self.storage_account.clone());
        v.insert("container", self.container.clone());
        v.insert("tools_image", self.tools_image.clone());
        v.insert("postgres_image", self.postgres_image.clone());
        v
    }

    fn instance_vars(&self, inst: &InstanceSpec) -> Vars {
        let mut v = self.base();
        v.insert("instance", inst.k8s_name.clone());
        v.insert("pvc_name", pvc_name(&inst.k8s_name));
        v.insert("secret_name", secret_name(&inst.k8s_name));
        v.insert("config_name", config_name(&inst.k8s_name));
        v.insert("storage", format!("{}Gi", inst.storage_size_gb.max(1)));
        v.insert(
            "image_type",
            serde_json::to_value(inst.image_type)
                .ok()
                .and_then(|x| x.as_str().map(str::to_owned))
                .unwrap_or_else(|| "stock".into()),
        );
        v
    }

    /// The PVC, Secret, ConfigMap, StatefulSet and Service of an instance.
    pub fn instance(
        &self,
        inst: &InstanceSpec,
        dns_label: Option<&str>,
        password: &Password,
    ) -> Result<InstanceObjects, Error> {
        let mut v = self.instance_vars(inst);
        v.insert(
            "password_b64",
            base64::engine::general_purpose::STANDARD.encode(password.expose()),
        );
        let mut pvc: PersistentVolumeClaim = render(PVC, &v)?;
        if let (Some(sc), Some(spec)) = (&self.storage_class, pvc.spec.as_mut()) {
            spec.storage_class_name = Some(sc.clone());
        }
        let mut service: Service = render(SERVICE, &v)?;
        if let Some(port) = service
            .spec
            .as_mut()
            .and_then(|s| s.ports.as_mut())
            .and_then(|p| p.first_mut())
        {
            port.port = i32::from(self.postgres_port);
        }
        if let Some(label) = dns_label {
            if let Some(spec) = service.spec.as_mut() {
                spec.type_ = Some("LoadBalancer".into());
            }
            service
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    "service.beta.kubernetes.io/azure-dns-label-name".into(),
                    label.to_owned(),
                );
        }
        Ok(InstanceObjects {
            pvc,
            secret: render(SECRET, &v)?,
            configmap: render(CONFIGMAP, &v)?,
            statefulset: render(STATEFULSET, &v)?,
            service,
        })
    }

    /// The backup Job of `task_id` for the source instance and image.
    pub fn backup_job(
        &self,
        task_id: Uuid,
        source: &InstanceSpec,
        image_id: Uuid,
    ) -> Result<Job, Error> {
        let mut v = self.base();
        v.insert(
            "job_name",
            job_name(&source.k8s_name, "run_backup", task_id),
        );
        v.insert("task_id", task_id.to_string());
        v.insert(
            "source_host",
            format!("{}.{}.svc", source.k8s_name, self.namespace),
        );
        v.insert("source_secret", secret_name(&source.k8s_name));
        v.insert(
            "image_prefix",
            ImageKeys::new(image_id).prefix().to_string(),
        );
        v.insert("dump_compression", self.dump_compression.to_string());
        self.with_deadline(render(BACKUP_JOB, &v)?)
    }

    /// The restore Job of `task_id` filling the instance's PVC from the image.
    pub fn restore_job(
        &self,
        task_id: Uuid,
        inst: &InstanceSpec,
        image_id: Uuid,
        manifest_sha256: &str,
    ) -> Result<Job, Error> {
        let mut v = self.instance_vars(inst);
        v.insert(
            "job_name",
            job_name(&inst.k8s_name, "run_restore_job", task_id),
        );
        v.insert("task_id", task_id.to_string());
        v.insert(
            "image_prefix",
            ImageKeys::new(image_id).prefix().to_string(),
        );
        v.insert("manifest_sha256", manifest_sha256.to_owned());
        v.insert("restore_jobs", self.restore_jobs.to_string());
        self.with_deadline(render(RESTORE_JOB, &v)?)
    }

    /// Numbers are set on the typed object (placeholders render strings).
    fn with_deadline(&self, mut job: Job) -> Result<Job, Error> {
        if let Some(spec) = job.spec.as_mut() {
            spec.active_deadline_seconds =
                Some(i64::try_from(self.job_deadline.as_secs()).unwrap_or(i64::MAX));
        }
        Ok(job)
    }

    /// The server's own deployment: Deployment, ServiceAccount, Role, RoleBinding, ConfigMap.
    pub fn server(
        &self,
    ) -> Result<(Deployment, ServiceAccount, Role, RoleBinding, ConfigMap), Error> {
        let mut v = self.base();
        v.insert("server_image", self.server_image.clone());
        v.insert("client_id", self.client_id.clone());
        v.insert("storage_url", format!("az://{}", self.container));
        Ok((
            render(SERVER_DEPLOYMENT, &v)?,
            render(SERVER_SA, &v)?,
            render(SERVER_ROLE, &v)?,
            render(SERVER_BINDING, &v)?,
            render(SERVER_CONFIG, &v)?,
        ))
    }

    /// Every manifest the platform would apply for an example fresh instance, backup and
    /// restore, plus the server's own, as (path, YAML).
    pub fn examples(&self) -> Result<Vec<Rendered>, Error> {
        let task = Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888);
        let image = Uuid::from_u128(0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0000);
        let example = |name: &str| InstanceSpec {
            id: Uuid::nil(),
            k8s_name: name.to_owned(),
            dns_label: name.to_owned(),
            port: 5432,
            postgres_version: "15".into(),
            image_type: entity::ImageType::Stock,
            storage_size_gb: 10,
        };
        let pw = Password::new("example-only-password");
        let mut out = Vec::new();
        let mut push = |path: &str, yaml: Result<String, serde_yaml::Error>| -> Result<(), Error> {
            out.push(Rendered {
                path: path.to_owned(),
                yaml: yaml.map_err(Error::Serialize)?,
            });
            Ok(())
        };
        let fresh = self.instance(&example("orders-prod-1a2b3c4d"), Some("orders-prod"), &pw)?;
        push("fresh/pvc.yaml", serde_yaml::to_string(&fresh.pvc))?;
        push("fresh/secret.yaml", serde_yaml::to_string(&fresh.secret))?;
        push(
            "fresh/configmap.yaml",
            serde_yaml::to_string(&fresh.configmap),
        )?;
        push(
            "fresh/statefulset.yaml",
            serde_yaml::to_string(&fresh.statefulset),
        )?;
        push("fresh/service.yaml", serde_yaml::to_string(&fresh.service))?;
        push(
            "backup/backup-job.yaml",
            serde_yaml::to_string(&self.backup_job(
                task,
                &example("orders-prod-1a2b3c4d"),
                image,
            )?),
        )?;
        let copy = example("orders-copy-5e6f7a8b");
        let restored = self.instance(&copy, None, &pw)?;
        push("restore/pvc.yaml", serde_yaml::to_string(&restored.pvc))?;
        push(
            "restore/secret.yaml",
            serde_yaml::to_string(&restored.secret),
        )?;
        push(
            "restore/configmap.yaml",
            serde_yaml::to_string(&restored.configmap),
        )?;
        push(
            "restore/restore-job.yaml",
            serde_yaml::to_string(&self.restore_job(task, &copy, image, &"ab".repeat(32))?),
        )?;
        push(
            "restore/statefulset.yaml",
            serde_yaml::to_string(&restored.statefulset),
        )?;
        push(
            "restore/service.yaml",
            serde_yaml::to_string(&restored.service),
        )?;
        let (d, sa, r, rb, cm) = self.server()?;
        push("server/deployment.yaml", serde_yaml::to_string(&d))?;
        push("server/serviceaccount.yaml", serde_yaml::to_string(&sa))?;
        push("server/role.yaml", serde_yaml::to_string(&r))?;
        push("server/rolebinding.yaml", serde_yaml::to_string(&rb))?;
        push("server/configmap.yaml", serde_yaml::to_string(&cm))?;
        Ok(out)
    }

    /// Writes [`KubeSettings::examples`] under `dir`.
    pub fn write_examples(&self, dir: &Path) -> Result<Vec<Rendered>, Error> {
        let files = self.examples()?;
        for f in &files {
            let p = dir.join(&f.path);
            let werr = |source| Error::Write {
                path: p.display().to_string(),
                source,
            };
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(werr)?;
            }
            std::fs::write(&p, &f.yaml).map_err(|source| Error::Write {
                path: p.display().to_string(),
                source,
            })?;
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn inst(name: &str) -> InstanceSpec {
        InstanceSpec {
            id: Uuid::nil(),
            k8s_name: name.into(),
            dns_label: name.into(),
            port: 5432,
            postgres_version: "15".into(),
            image_type: entity::ImageType::PgDurable,
            storage_size_gb: 20,
        }
    }

    fn env_values(pod: &PodSpec) -> Vec<String> {
        pod.containers
            .iter()
            .flat_map(|c| c.env.iter().flatten())
            .filter_map(|e| e.value.clone())
            .collect()
    }

    #[test]
    fn instance_objects_use_secret_refs_and_settings() {
        let s = KubeSettings {
            storage_class: Some("managed-premium".into()),
            ..KubeSettings::default()
        };
        let pw = Password::new("Sup3r-secret-pw");
        let o = s
            .instance(&inst("db-1a2b3c4d"), Some("db-public"), &pw)
            .unwrap();
        assert_eq!(
            o.pvc.spec.as_ref().unwrap().storage_class_name.as_deref(),
            Some("managed-premium")
        );
        assert_eq!(
            o.pvc
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "20Gi"
        );
        let data = o.secret.data.as_ref().unwrap();
        assert_eq!(data["password"].0, b"Sup3r-secret-pw");
        let pod = o
            .statefulset
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        assert!(!env_values(pod).iter().any(|v| v.contains("Sup3r")));
        let pw_env = pod.containers[0]
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "POSTGRES_PASSWORD")
            .unwrap();
        assert_eq!(
            pw_env
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "db-1a2b3c4d-credentials"
        );
        assert_eq!(
            o.statefulset
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap()["snapgres.io/image-type"],
            "pg_durable"
        );
        let svc = o.service.spec.as_ref().unwrap();
        assert_eq!(svc.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(
            o.service.metadata.annotations.as_ref().unwrap()
                ["service.beta.kubernetes.io/azure-dns-label-name"],
            "db-public"
        );
        let plain = s.instance(&inst("db-1a2b3c4d"), None, &pw).unwrap();
        assert_eq!(
            plain.service.spec.as_ref().unwrap().type_.as_deref(),
            Some("ClusterIP")
        );
        assert!(plain.service.metadata.annotations.is_none());
    }

    #[test]
    fn jobs_use_workload_identity_and_env_not_script_values() {
        let s = KubeSettings::default();
        let task = Uuid::new_v4();
        let image = Uuid::new_v4();
        let b = s.backup_job(task, &inst("src-1a2b3c4d"), image).unwrap();
        let r = s
            .restore_job(task, &inst("dst-1a2b3c4d"), image, &"cd".repeat(32))
            .unwrap();
        for job in [&b, &r] {
            let tpl = &job.spec.as_ref().unwrap().template;
            assert_eq!(
                tpl.metadata.as_ref().unwrap().labels.as_ref().unwrap()
                    ["azure.workload.identity/use"],
                "true"
            );
            let pod = tpl.spec.as_ref().unwrap();
            assert_eq!(pod.service_account_name.as_deref(), Some("snapgres"));
            assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
            let script = pod.containers[0].args.as_ref().unwrap().join("\n");
            assert!(script.contains("azcopy login --login-type=workload"));
            assert!(!script.contains("--identity"));
            // Values reach the script only through the environment.
            assert!(!script.contains(&image.to_string()));
            assert!(env_values(pod)
                .iter()
                .any(|v| v.contains(&image.to_string())));
            let pw = pod.containers[0]
                .env
                .as_ref()
                .unwrap()
                .iter()
                .find(|e| e.name == "PGPASSWORD")
                .unwrap();
            assert!(pw.value.is_none() && pw.value_from.as_ref().unwrap().secret_key_ref.is_some());
            assert_eq!(job.spec.as_ref().unwrap().backoff_limit, Some(0));
            assert_eq!(
                job.spec.as_ref().unwrap().active_deadline_seconds,
                Some(6 * 3600)
            );
        }
        assert_eq!(
            b.metadata.name.as_deref(),
            Some(job_name("src-1a2b3c4d", "run_backup", task).as_str())
        );
        assert_eq!(
            job_name("src-1a2b3c4d", "run_backup", task),
            job_name("src-1a2b3c4d", "run_backup", task)
        );
        let long = job_name(&"x".repeat(80), "run_restore_job", task);
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn values_cannot_break_the_document() {
        let s = KubeSettings {
            storage_account: "acct\"\n  evil: true".into(),
            ..KubeSettings::default()
        };
        let j = s
            .backup_job(Uuid::new_v4(), &inst("a-1a2b3c4d"), Uuid::new_v4())
            .unwrap();
        let env = j.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        assert_eq!(
            env.iter()
                .find(|e| e.name == "STORAGE_ACCOUNT")
                .unwrap()
                .value
                .as_deref(),
            Some("acct\"\n  evil: true")
        );
    }

    #[test]
    fn examples_render_without_secrets_in_plain_text() {
        let files = KubeSettings::default().examples().unwrap();
        assert_eq!(files.len(), 17);
        for f in &files {
            assert!(
                !f.yaml.contains("example-only-password"),
                "{} holds a plaintext password",
                f.path
            );
            assert!(
                !f.yaml.contains("{{"),
                "{} has an unrendered placeholder",
                f.path
            );
        }
    }
}
