//! `create_image`: the seed's Backup Flow.

use async_trait::async_trait;
use chrono::Utc;
use entity::image::ImageState;
use entity::instance::InstanceState;
use sea_orm::Set;

use super::{spec_of, with_progress, Deps};
use crate::platform::BackupSpec;
use crate::storage::{ImageKeys, Manifest};
use crate::tasks::{Outcome, RetryPolicy, StepCtx, StepDef, StepError, Workflow};

/// Steps, in order.
pub const STEPS: [&str; 4] = [
    "create_image_record",
    "get_source_instance",
    "run_backup",
    "update_image_status",
];

/// The workflow.
pub struct CreateImage {
    deps: Deps,
}

impl CreateImage {
    /// With its dependencies.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }
}

#[async_trait]
impl Workflow for CreateImage {
    fn kind(&self) -> &'static str {
        super::CREATE_IMAGE
    }

    fn steps(&self, _: &serde_json::Value) -> Vec<StepDef> {
        STEPS
            .iter()
            .map(|n| match *n {
                "run_backup" => StepDef::new(
                    n,
                    RetryPolicy {
                        max_attempts: 3,
                        timeout: self.deps.limits.backup,
                        ..RetryPolicy::default()
                    },
                ),
                _ => StepDef::new(n, RetryPolicy::default()),
            })
            .collect()
    }

    async fn run_step(&self, step: &str, ctx: &StepCtx) -> Result<(), StepError> {
        let d = &self.deps;
        let id = ctx
            .target_id
            .ok_or_else(|| StepError::fatal("task has no target image"))?;
        let image = d.image(id).await?;
        match step {
            "create_image_record" => {
                let keys = ImageKeys::new(id);
                let (store, container, path) = (
                    d.storage.kind().to_owned(),
                    d.storage.container().to_owned(),
                    keys.prefix().to_string(),
                );
                let task_id = ctx.task_id;
                d.save_image(image, |am| {
                    am.store = Set(store);
                    am.container = Set(container);
                    am.path = Set(path);
                    am.format = Set("pg_dump-custom+globals/v1".to_owned());
                    am.task_id = Set(Some(task_id));
                })
                .await?;
                Ok(())
            }
            "get_source_instance" => {
                let src = image
                    .source_instance_id
                    .ok_or_else(|| StepError::fatal("image has no source instance"))?;
                let inst = d.instance(src).await?;
                if inst.state != InstanceState::Running {
                    return Err(StepError::fatal(format!(
                        "source instance {} is {:?}, not running",
                        inst.name, inst.state
                    )));
                }
                ctx.message(format!(
                    "source {} ({}:{})",
                    inst.name,
                    inst.host.as_deref().unwrap_or("?"),
                    inst.port.unwrap_or(0)
                ))
                .await
            }
            "run_backup" => {
                let inst = d
                    .instance(image.source_instance_id.unwrap_or_default())
                    .await?;
                let spec = BackupSpec {
                    task_id: ctx.task_id,
                    image_id: id,
                    source_name: inst.k8s_name.clone(),
                    keys: ImageKeys::new(id),
                    source: d
                        .platform
                        .endpoint(&spec_of(&inst))
                        .await
                        .map_err(|e| e.into_step())?,
                    password: d.password_of(&inst)?,
                    postgres_version: image.postgres_version.clone(),
                    image_type: image.image_type,
                };
                let (manifest, sha) =
                    with_progress(
                        ctx,
                        |tx| async move { d.platform.run_backup(&spec, tx).await },
                    )
                    .await?;
                ctx.put("manifest", &manifest).await?;
                ctx.put("manifest_sha256", &sha).await?;
                ctx.log(
                    "info",
                    format!(
                        "dumped {} databases, {} bytes",
                        manifest.databases.len(),
                        manifest.total_size()
                    ),
                )
                .await
            }
            "update_image_status" => {
                let manifest: Manifest = ctx
                    .get("manifest")
                    .await?
                    .ok_or_else(|| StepError::fatal("no backup result recorded"))?;
                let sha: String = ctx
                    .get("manifest_sha256")
                    .await?
                    .ok_or_else(|| StepError::fatal("no backup checksum recorded"))?;
                let names: Vec<String> = manifest
                    .databases
                    .iter()
                    .map(|db| db.name.clone())
                    .collect();
                let size = i64::try_from(manifest.total_size()).unwrap_or(i64::MAX);
                d.save_image(image, |am| {
                    am.size_bytes = Set(Some(size));
                    am.checksum = Set(Some(sha));
                    am.databases = Set(serde_json::json!(names));
                    am.state = Set(ImageState::Ready);
                    am.ready_at = Set(Some(Utc::now()));
                    am.error = Set(None);
                })
                .await?;
                Ok(())
            }
            other => Err(StepError::fatal(format!("unknown step {other}"))),
        }
    }

    async fn cleanup(&self, ctx: &StepCtx, outcome: &Outcome) -> Result<(), StepError> {
        let d = &self.deps;
        let Some(id) = ctx.target_id else {
            return Ok(());
        };
        // The store may be what failed: keep trying (within the engine's cleanup limit) so no
        // partial object outlives the failed image.
        let prefix = ImageKeys::new(id).prefix();
        let mut wait = std::time::Duration::from_millis(500);
        let n = loop {
            match d.storage.delete_prefix(&prefix).await {
                Ok(n) => break n,
                Err(e) => {
                    ctx.log(
                        "warn",
                        format!(
                            "deleting partial objects failed: {}; retrying in {:.1}s",
                            crate::tasks::error_chain(&e),
                            wait.as_secs_f64()
                        ),
                    )
                    .await?;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(10));
                }
            }
        };
        let image = d.image(id).await?;
        let error = outcome.message();
        d.save_image(image, |am| {
            am.state = Set(ImageState::Failed);
            am.error = Set(Some(error));
        })
        .await?;
        ctx.log("info", format!("deleted {n} partial objects"))
            .await
    }
}
