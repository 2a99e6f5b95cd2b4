//! `delete_instance`: stop PostgreSQL, remove everything the instance had, mark it deleted.

use async_trait::async_trait;
use entity::instance::InstanceState;
use sea_orm::Set;

use super::{spec_of, Deps};
use crate::tasks::{Outcome, RetryPolicy, StepCtx, StepDef, StepError, Workflow};

/// Steps, in order.
pub const STEPS: [&str; 4] = [
    "mark_deleting",
    "stop_postgres",
    "delete_resources",
    "mark_deleted",
];

/// The workflow.
pub struct DeleteInstance {
    deps: Deps,
}

impl DeleteInstance {
    /// With its dependencies.
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }
}

#[async_trait]
impl Workflow for DeleteInstance {
    fn kind(&self) -> &'static str {
        super::DELETE_INSTANCE
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
            .ok_or_else(|| StepError::fatal("task has no target instance"))?;
        let inst = d.instance(id).await?;
        match step {
            "mark_deleting" => d
                .save_instance(inst, |am| am.state = Set(InstanceState::Deleting))
                .await
                .map(|_| ()),
            "stop_postgres" => d
                .platform
                .stop_postgres(&spec_of(&inst))
                .await
                .map_err(|e| e.into_step()),
            "delete_resources" => d
                .platform
                .delete_resources(&spec_of(&inst))
                .await
                .map_err(|e| e.into_step()),
            "mark_deleted" => d
                .save_instance(inst, |am| {
                    am.state = Set(InstanceState::Deleted);
                    am.live_name = Set(None);
                    am.live_dns_label = Set(None);
                })
                .await
                .map(|_| ()),
            other => Err(StepError::fatal(format!("unknown step {other}"))),
        }
    }

    async fn cleanup(&self, ctx: &StepCtx, outcome: &Outcome) -> Result<(), StepError> {
        let Some(id) = ctx.target_id else {
            return Ok(());
        };
        let inst = self.deps.instance(id).await?;
        let msg = match outcome {
            Outcome::Failed(m) => format!("delete failed: {m}"),
            Outcome::Cancelled => "delete cancelled".to_owned(),
        };
        self.deps
            .save_instance(inst, |am| {
                am.state = Set(InstanceState::Failed);
                am.error = Set(Some(msg));
            })
            .await
            .map(|_| ())
    }
}
