//! `delete_image`: delete every object of an image, then mark it deleted (its name is free again).

use async_trait::async_trait;
use entity::image::ImageState;
use sea_orm::Set;

use super::Deps;
use crate::storage::ImageKeys;
use crate::tasks::{Outcome, RetryPolicy, StepCtx, StepDef, StepError, Workflow};

/// Steps, in order.
pub const STEPS: [&str; 3] = ["mark_deleting", "delete_objects", "mark_deleted"];

/// The workflow.
pub struct DeleteImage {
    deps: Deps,
}

impl DeleteImage {
    /// With its dependencies.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }
}

#[async_trait]
impl Workflow for DeleteImage {
    fn kind(&self) -> &'static str {
        super::DELETE_IMAGE
    }

    fn steps(&self, _: &serde_json::Value) -> Vec<StepDef> {
        STEPS
            .iter()
            .map(|n| {
                StepDef::new(
                    n,
                    RetryPolicy {
                        max_attempts: 5,
                        ..RetryPolicy::default()
                    },
                )
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
            "mark_deleting" => d
                .save_image(image, |am| am.state = Set(ImageState::Deleting))
                .await
                .map(|_| ()),
            "delete_objects" => {
                let n = d
                    .storage
                    .delete_prefix(&ImageKeys::new(id).prefix())
                    .await
                    .map_err(|e| {
                        if e.is_retryable() {
                            StepError::Retryable(Box::new(e))
                        } else {
                            StepError::Fatal(Box::new(e))
                        }
                    })?;
                ctx.message(format!("deleted {n} objects")).await
            }
            "mark_deleted" => d
                .save_image(image, |am| {
                    am.state = Set(ImageState::Deleted);
                    am.live_name = Set(None);
                })
                .await
                .map(|_| ()),
            other => Err(StepError::fatal(format!("unknown step {other}"))),
        }
    }

    async fn cleanup(&self, ctx: &StepCtx, outcome: &Outcome) -> Result<(), StepError> {
        // The objects may be partly gone: the image can no longer be restored.
        let Some(id) = ctx.target_id else {
            return Ok(());
        };
        let image = self.deps.image(id).await?;
        let msg = match outcome {
            Outcome::Failed(m) => format!("delete failed: {m}"),
            Outcome::Cancelled => "delete cancelled".to_owned(),
        };
        self.deps
            .save_image(image, |am| {
                am.state = Set(ImageState::Failed);
                am.error = Set(Some(msg));
            })
            .await
            .map(|_| ())
    }
}
