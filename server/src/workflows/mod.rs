//! The workflows, one file per task kind: each is its ordered list of steps (as data) and what
//! each step does, using the platform and the store.

mod create_image;
mod create_instance;
mod delete_image;
mod delete_instance;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entity::{image, instance};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, IntoActiveModel};
use uuid::Uuid;

pub use create_image::CreateImage;
pub use create_instance::CreateInstance;
pub use delete_image::DeleteImage;
pub use delete_instance::DeleteInstance;

use crate::platform::{InstanceSpec, Platform, Progress};
use crate::secrets::{Cipher, Password};
use crate::storage::Storage;
use crate::tasks::{Engine, ResultExt, StepCtx, StepError};

/// Task kinds.
pub const CREATE_INSTANCE: &str = "create_instance";
pub const CREATE_IMAGE: &str = "create_image";
pub const DELETE_IMAGE: &str = "delete_image";
pub const DELETE_INSTANCE: &str = "delete_instance";

/// Time limits of the long steps.
#[derive(Debug, Clone)]
pub struct Limits {
    pub wait_ready: Duration,
    pub test_connection: Duration,
    pub backup: Duration,
    pub restore: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wait_ready: Duration::from_secs(300),
            // The seed's lesson: load-balancer DNS can take 60–90 s, so 120 s per try.
            test_connection: Duration::from_secs(120),
            backup: Duration::from_secs(6 * 3600),
            restore: Duration::from_secs(6 * 3600),
        }
    }
}

/// What the workflows use.
#[derive(Clone)]
pub struct Deps {
    pub db: DatabaseConnection,
    pub platform: Arc<dyn Platform>,
    pub storage: Storage,
    pub cipher: Cipher,
    pub limits: Limits,
}

/// Registers every workflow with the engine.
pub fn register_all(engine: &Engine, deps: &Deps) {
    engine.register(Arc::new(CreateInstance::new(deps.clone())));
    engine.register(Arc::new(CreateImage::new(deps.clone())));
    engine.register(Arc::new(DeleteImage::new(deps.clone())));
    engine.register(Arc::new(DeleteInstance::new(deps.clone())));
}

fn db_err(e: sea_orm::DbErr) -> StepError {
    StepError::Retryable(Box::new(e))
}

impl Deps {
    async fn instance(&self, id: Uuid) -> Result<instance::Model, StepError> {
        instance::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .ok_or_else(|| StepError::fatal(format!("instance {id} no longer exists")))
    }

    async fn image(&self, id: Uuid) -> Result<image::Model, StepError> {
        image::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err)?
            .ok_or_else(|| StepError::fatal(format!("image {id} no longer exists")))
    }

    async fn save_instance(
        &self,
        m: instance::Model,
        f: impl FnOnce(&mut instance::ActiveModel),
    ) -> Result<instance::Model, StepError> {
        let mut am = m.into_active_model();
        f(&mut am);
        am.updated_at = sea_orm::Set(Utc::now());
        am.update(&self.db).await.map_err(db_err)
    }

    async fn save_image(
        &self,
        m: image::Model,
        f: impl FnOnce(&mut image::ActiveModel),
    ) -> Result<image::Model, StepError> {
        let mut am = m.into_active_model();
        f(&mut am);
        am.update(&self.db).await.map_err(db_err)
    }

    fn password_of(&self, inst: &instance::Model) -> Result<Password, StepError> {
        let enc = inst.password_enc.as_deref().ok_or_else(|| {
            StepError::fatal(format!("instance {} has no stored password", inst.name))
        })?;
        self.cipher.decrypt(enc).fatal()
    }
}

/// The platform's view of an instance row.
pub fn spec_of(inst: &instance::Model) -> InstanceSpec {
    InstanceSpec {
        id: inst.id,
        k8s_name: inst.k8s_name.clone(),
        dns_label: inst.dns_label.clone(),
        port: inst.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
        postgres_version: inst.postgres_version.clone(),
        image_type: inst.image_type,
        storage_size_gb: inst.storage_size_gb,
    }
}

/// Runs `work` while forwarding its byte progress and output lines to the step.
async fn with_progress<T, F>(
    ctx: &StepCtx,
    work: impl FnOnce(Progress) -> F,
) -> Result<T, StepError>
where
    F: std::future::Future<Output = Result<T, crate::platform::Error>>,
{
    let (tx, (mut rx, mut lines)) = Progress::channel();
    let fut = work(tx);
    tokio::pin!(fut);
    let mut reported = false;
    let result = loop {
        tokio::select! {
            r = &mut fut => break r,
            changed = rx.changed() => {
                if changed.is_ok() {
                    let (done, total) = *rx.borrow_and_update();
                    reported = true;
                    ctx.progress(done as f64, total.map(|t| t as f64), "bytes", false).await?;
                }
            }
            Some(line) = lines.recv() => ctx.log("info", line).await?,
        }
    };
    while let Ok(line) = lines.try_recv() {
        ctx.log("info", line).await?;
    }
    // The last figure always lands, so a finished step shows its final count.
    if reported || rx.has_changed().unwrap_or(false) {
        let (done, total) = *rx.borrow();
        ctx.progress(done as f64, total.map(|t| t as f64), "bytes", true)
            .await?;
        if result.is_ok() {
            if let Some(step) = ctx.step_name().await {
                crate::metrics::METRICS.bytes(step, done);
            }
        }
    }
    result.map_err(crate::platform::Error::into_step)
}
