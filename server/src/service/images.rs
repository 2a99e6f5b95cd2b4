//! Image operations: create (a backup), delete, read.

use chrono::Utc;
use entity::image::{self, ImageState};
use entity::instance::{self, InstanceState};
use entity::task;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use uuid::Uuid;

use super::instances::{engine_err, istate_word, state_word};
use super::{older_than, validate, Actor, Page, Services};
use crate::error::{is_unique_violation, Error, Result};
use crate::storage::ImageKeys;
use crate::workflows;

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct CreateImage {
    pub name: String,
    pub instance_id: Uuid,
    pub description: Option<String>,
}

impl Services {
    /// Reserves the image name and id, and starts the backup.
    pub async fn create_image(
        &self,
        actor: &Actor,
        input: CreateImage,
    ) -> Result<(image::Model, task::Model)> {
        actor.require(entity::api_token::Role::Operator)?;
        validate::image_name("name", &input.name)?;
        if let Some(d) = &input.description {
            validate::description("description", d)?;
        }
        let inst = instance::Entity::find_by_id(input.instance_id)
            .one(&self.db)
            .await?
            .filter(|i| i.state != InstanceState::Deleted)
            .ok_or_else(|| Error::not_found("instance", input.instance_id, Some("instanceId")))?;
        if inst.state != InstanceState::Running {
            return Err(Error::invalid(
                "instanceId",
                format!(
                    "instance {} is {}, not running",
                    inst.name,
                    istate_word(inst.state)
                ),
            ));
        }
        let pw = inst
            .password_enc
            .as_deref()
            .ok_or_else(|| Error::Internal {
                context: format!("instance {} has no stored password", inst.name),
                source: None,
            })?;
        let pw = self
            .cipher
            .decrypt(pw)
            .map_err(|e| Error::internal("decrypting the instance password", e))?;
        let enc = self
            .cipher
            .encrypt(&pw)
            .map_err(|e| Error::internal("encrypting the source password", e))?;
        self.check_task_quota(actor).await?;
        let id = Uuid::new_v4();
        let task_id = Uuid::new_v4();
        // Writes first (see create_instance): the unique index on live names decides races.
        let txn = self.db.begin().await?;
        let row = image::ActiveModel {
            id: Set(id),
            name: Set(input.name.clone()),
            live_name: Set(Some(input.name.clone())),
            description: Set(input.description.clone()),
            source_instance_id: Set(Some(inst.id)),
            source_instance_name: Set(inst.name.clone()),
            postgres_version: Set(inst.postgres_version.clone()),
            image_type: Set(inst.image_type),
            storage_size_gb: Set(inst.storage_size_gb),
            state: Set(ImageState::Creating),
            store: Set(self.store_kind.to_owned()),
            container: Set(self.store_container.clone()),
            path: Set(ImageKeys::new(id).prefix().to_string()),
            format: Set("pg_dump-custom+globals/v1".to_owned()),
            size_bytes: Set(None),
            checksum: Set(None),
            databases: Set(serde_json::json!([])),
            source_password_enc: Set(enc),
            error: Set(None),
            task_id: Set(Some(task_id)),
            created_at: Set(Utc::now()),
            ready_at: Set(None),
        };
        let inserted = match row.insert(&txn).await {
            Ok(m) => m,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::conflict(
                    "name",
                    format!("an image named {} already exists", input.name),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let t = self
            .engine
            .enqueue(
                &txn,
                task_id,
                workflows::CREATE_IMAGE,
                Some(id),
                serde_json::json!({ "name": input.name, "instance_id": inst.id }),
                Some(actor.name.clone()),
            )
            .await
            .map_err(engine_err)?;
        match txn.commit().await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::conflict(
                    "name",
                    format!("an image named {} already exists", input.name),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.engine.wake(task_id);
        Ok((inserted, t))
    }

    /// Deletes an image's objects and then the image.
    pub async fn delete_image(&self, actor: &Actor, id: Uuid) -> Result<task::Model> {
        actor.require(entity::api_token::Role::Operator)?;
        self.check_task_quota(actor).await?;
        let txn = self.db.begin().await?;
        let res = image::Entity::update_many()
            .col_expr(
                image::Column::State,
                sea_orm::sea_query::Expr::value(ImageState::Deleting),
            )
            .filter(image::Column::Id.eq(id))
            .filter(image::Column::State.is_in([ImageState::Ready, ImageState::Failed]))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            drop(txn);
            let img = image::Entity::find_by_id(id)
                .one(&self.db)
                .await?
                .filter(|i| i.state != ImageState::Deleted)
                .ok_or_else(|| Error::not_found("image", id, None))?;
            return Err(Error::Conflict {
                field: None,
                message: format!("image {} is {}", img.name, state_word(img.state)),
            });
        }
        let img = image::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("image", id, None))?;
        let task_id = Uuid::new_v4();
        let t = self
            .engine
            .enqueue(
                &txn,
                task_id,
                workflows::DELETE_IMAGE,
                Some(id),
                serde_json::json!({ "name": img.name }),
                Some(actor.name.clone()),
            )
            .await
            .map_err(engine_err)?;
        txn.commit().await?;
        self.engine.wake(task_id);
        Ok(t)
    }

    /// One image.
    pub async fn image(&self, id: Uuid) -> Result<Option<image::Model>> {
        Ok(image::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Images, newest first.
    pub async fn images(
        &self,
        first: Option<i32>,
        after: Option<&str>,
        state: Option<ImageState>,
    ) -> Result<Page<image::Model>> {
        let n = super::page_size(first)?;
        let mut q = image::Entity::find()
            .order_by_desc(image::Column::CreatedAt)
            .order_by_desc(image::Column::Id);
        if let Some(s) = state {
            q = q.filter(image::Column::State.eq(s));
        }
        if let Some(a) = after {
            q = q.filter(older_than!(
                image::Column::CreatedAt,
                image::Column::Id,
                super::decode_cursor(a)?
            ));
        }
        let mut items = q.limit(n + 1).all(&self.db).await?;
        let has_next = items.len() as u64 > n;
        items.truncate(n as usize);
        Ok(Page { items, has_next })
    }
}
