//! `create_instance`: a fresh instance, or (with `source_image_id`) a restore of an image.

use async_trait::async_trait;
use entity::image::ImageState;
use entity::instance::InstanceState;
use sea_orm::Set;

use super::{spec_of, with_progress, Deps};
use crate::platform::{Endpoint, RestoreSpec};
use crate::storage::ImageKeys;
use crate::tasks::{Outcome, ResultExt, RetryPolicy, StepCtx, StepDef, StepError, Workflow};
use std::time::Duration;

/// Steps of a fresh instance.
pub const FRESH_STEPS: [&str; 7] = [
    "create_volume",
    "create_secret",
    "create_config",
    "deploy_postgres",
    "wait_ready",
    "get_connection_strings",
    "test_connection",
];
/// Steps of a restore (the seed's Restore Flow).
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

/// The workflow.
pub struct CreateInstance {
    deps: Deps,
}

impl CreateInstance {
    /// With its dependencies.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }

    fn policy(&self, step: &str) -> RetryPolicy {
        let l = &self.deps.limits;
        match step {
            // The seed: 5 tries, 120 s each.
            "test_connection" => RetryPolicy {
                max_attempts: 5,
                initial_backoff: Duration::from_secs(2),
                max_backoff: Duration::from_secs(30),
                timeout: l.test_connection + Duration::from_secs(5),
            },
            "wait_ready" => RetryPolicy {
                max_attempts: 2,
                timeout: l.wait_ready + Duration::from_secs(5),
                ..RetryPolicy::default()
            },
            "run_restore_job" => RetryPolicy {
                max_attempts: 3,
                timeout: l.restore,
                ..RetryPolicy::default()
            },
            "wait_restore_job" => RetryPolicy {
                max_attempts: 2,
                timeout: l.restore + Duration::from_secs(60),
                ..RetryPolicy::default()
            },
            "create_config" | "deploy_postgres" | "deploy_postgres_from_volume" => RetryPolicy {
                max_attempts: 3,
                timeout: Duration::from_secs(600),
                ..RetryPolicy::default()
            },
            _ => RetryPolicy::default(),
        }
    }

    async fn restore_spec(&self, ctx: &StepCtx) -> Result<RestoreSpec, StepError> {
        let inst = self
            .deps
            .instance(ctx.target_id.unwrap_or_default())
            .await?;
        let image_id = inst
            .source_image_id
            .ok_or_else(|| StepError::fatal("instance has no source image"))?;
        let image = self.deps.image(image_id).await?;
        let checksum = image
            .checksum
            .clone()
            .ok_or_else(|| StepError::fatal(format!("image {} has no checksum", image.name)))?;
        Ok(RestoreSpec {
            task_id: ctx.task_id,
            image_id,
            keys: ImageKeys::new(image_id),
            manifest_sha256: checksum,
            password: self.deps.password_of(&inst)?,
        })
    }
}

#[async_trait]
impl Workflow for CreateInstance {
    fn kind(&self) -> &'static str {
        super::CREATE_INSTANCE
    }

    fn steps(&self, input: &serde_json::Value) -> Vec<StepDef> {
        let restore = input.get("source_image_id").is_some_and(|v| !v.is_null());
        let names: &[&'static str] = if restore {
            &RESTORE_STEPS
        } else {
            &FRESH_STEPS
        };
        names
            .iter()
            .map(|n| StepDef::new(n, self.policy(n)))
            .collect()
    }

    async fn run_step(&self, step: &str, ctx: &StepCtx) -> Result<(), StepError> {
        let d = &self.deps;
        let id = ctx
            .target_id
            .ok_or_else(|| StepError::fatal("task has no target instance"))?;
        let inst = d.instance(id).await?;
        match step {
            "fetch_image" => {
                let image_id = inst
                    .source_image_id
                    .ok_or_else(|| StepError::fatal("instance has no source image"))?;
                let image = d.image(image_id).await?;
                if image.state != ImageState::Ready {
                    return Err(StepError::fatal(format!(
                        "image {} is {:?}, not ready",
                        image.name, image.state
                    )));
                }
                // The image decides the type and version, whatever the request said.
                let size = inst.storage_size_gb.max(image.storage_size_gb);
                d.save_instance(inst, |am| {
                    am.image_type = Set(image.image_type);
                    am.postgres_version = Set(image.postgres_version.clone());
                    am.storage_size_gb = Set(size);
                })
                .await?;
                ctx.message(format!(
                    "image {} ({} databases)",
                    image.name,
                    image.databases.as_array().map_or(0, |a| a.len())
                ))
                .await
            }
            "get_source_password" => {
                let image = d.image(inst.source_image_id.unwrap_or_default()).await?;
                let pw = d.cipher.decrypt(&image.source_password_enc).fatal()?;
                let enc = d.cipher.encrypt(&pw).fatal()?;
                d.save_instance(inst, |am| am.password_enc = Set(Some(enc)))
                    .await?;
                ctx.log(
                    "info",
                    "the restored instance uses the source image's password",
                )
                .await
            }
            "create_volume" => {
                let inst = if inst.port.is_none() {
                    let port = d.platform.assign_port().retryable()?;
                    d.save_instance(inst, |am| am.port = Set(Some(i32::from(port))))
                        .await?
                } else {
                    inst
                };
                d.platform
                    .create_volume(&spec_of(&inst))
                    .await
                    .map_err(|e| e.into_step())
            }
            "create_secret" => {
                let pw = d.password_of(&inst)?;
                d.platform
                    .create_secret(&spec_of(&inst), &pw)
                    .await
                    .map_err(|e| e.into_step())
            }
            "create_config" => {
                let pw = d.password_of(&inst)?;
                d.platform
                    .create_config(&spec_of(&inst), &pw)
                    .await
                    .map_err(|e| e.into_step())
            }
            "deploy_postgres" => d
                .platform
                .deploy_postgres(&spec_of(&inst))
                .await
                .map_err(|e| e.into_step()),
            "run_restore_job" => {
                let spec = self.restore_spec(ctx).await?;
                let p = spec_of(&inst);
                with_progress(ctx, |tx| async move {
                    d.platform.start_restore_job(&p, &spec, tx).await
                })
                .await
            }
            "wait_restore_job" => {
                let spec = self.restore_spec(ctx).await?;
                let p = spec_of(&inst);
                let limit = d.limits.restore;
                with_progress(ctx, |tx| async move {
                    d.platform.wait_restore_job(&p, &spec, tx, limit).await
                })
                .await
            }
            "deploy_postgres_from_volume" => d
                .platform
                .deploy_postgres_from_volume(&spec_of(&inst))
                .await
                .map_err(|e| e.into_step()),
            "wait_ready" => {
                let pw = d.password_of(&inst)?;
                d.platform
                    .wait_ready(&spec_of(&inst), &pw, d.limits.wait_ready)
                    .await
                    .map_err(|e| e.into_step())
            }
            "get_connection_strings" => {
                let ep = d
                    .platform
                    .endpoint(&spec_of(&inst))
                    .await
                    .map_err(|e| e.into_step())?;
                ctx.put("endpoint", &ep).await?;
                let (host, port) = (ep.host.clone(), i32::from(ep.port));
                d.save_instance(inst, |am| {
                    am.host = Set(Some(host));
                    am.port = Set(Some(port));
                })
                .await?;
                ctx.message(format!(
                    "postgresql://{}@{}:{}/{}",
                    ep.user, ep.host, ep.port, ep.database
                ))
                .await
            }
            "test_connection" => {
                let ep: Endpoint = match ctx.get("endpoint").await? {
                    Some(ep) => ep,
                    None => d
                        .platform
                        .endpoint(&spec_of(&inst))
                        .await
                        .map_err(|e| e.into_step())?,
                };
                let pw = d.password_of(&inst)?;
                d.platform
                    .test_connection(&ep, &pw, d.limits.test_connection)
                    .await
                    .map_err(|e| e.into_step())?;
                d.save_instance(inst, |am| {
                    am.state = Set(InstanceState::Running);
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
        let inst: entity::instance::Model = d.instance(id).await?;
        d.platform
            .delete_resources(&spec_of(&inst))
            .await
            .map_err(|e| e.into_step())?;
        let error = outcome.message();
        // Nothing of the instance is left, so its name and DNS label are free again.
        d.save_instance(inst, |am| {
            am.state = Set(InstanceState::Failed);
            am.error = Set(Some(error));
            am.live_name = Set(None);
            am.live_dns_label = Set(None);
        })
        .await?;
        ctx.log("info", "removed everything the instance had").await
    }
}
