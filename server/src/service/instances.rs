//! Instance operations: create (fresh or restore), delete, read.

use chrono::Utc;
use entity::image::{self, ImageState};
use entity::instance::{self, InstanceState};
use entity::task;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use uuid::Uuid;

use super::{older_than, validate, Actor, Page, Services};
use crate::error::{is_unique_violation, Error, Result};
use crate::secrets::Password;
use crate::workflows;

/// Where clients connect to an instance. Never a password: the URI has none.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionInfo {
    pub host: String,
    pub port: i32,
    pub user: String,
    pub database: String,
    pub uri: String,
}

/// The connection of an instance that has an address and is not being deleted.
pub fn connection_of(m: &instance::Model) -> Option<ConnectionInfo> {
    if matches!(m.state, InstanceState::Deleted | InstanceState::Deleting) {
        return None;
    }
    let (host, port) = (m.host.clone()?, m.port?);
    let (user, database) = ("postgres".to_owned(), "postgres".to_owned());
    let uri = format!("postgresql://{user}@{host}:{port}/{database}");
    Some(ConnectionInfo {
        host,
        port,
        user,
        database,
        uri,
    })
}

/// What a caller asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateInstance {
    pub name: String,
    pub password: Option<Password>,
    pub dns_label: Option<String>,
    pub postgres_version: Option<String>,
    pub storage_size_gb: Option<i32>,
    pub image_type: Option<entity::ImageType>,
    pub source_image_id: Option<Uuid>,
    pub runtime_image_id: Option<Uuid>,
    pub image_override: Option<String>,
}

/// The new instance, its task, and anything the caller should know.
#[derive(Debug, Clone)]
pub struct Created {
    pub instance: instance::Model,
    pub task: task::Model,
    pub warnings: Vec<String>,
}

impl Services {
    /// Creates an instance; with `source_image_id`, a restore of that image.
    pub async fn create_instance(&self, actor: &Actor, input: CreateInstance) -> Result<Created> {
        actor.require(entity::api_token::Role::Operator)?;
        validate::instance_name("name", &input.name)?;
        let dns_label = input
            .dns_label
            .clone()
            .unwrap_or_else(|| input.name.clone());
        validate::dns_label("dnsLabel", &dns_label)?;
        let mut warnings = Vec::new();
        if input.source_image_id.is_some() {
            if input.runtime_image_id.is_some() {
                return Err(Error::invalid(
                    "runtimeImageId",
                    "sourceImageId cannot be combined with runtimeImageId",
                ));
            }
            if input.image_override.is_some() {
                return Err(Error::invalid(
                    "imageOverride",
                    "sourceImageId cannot be combined with imageOverride",
                ));
            }
        }
        if let Some(n) = input.storage_size_gb {
            validate::storage_size("storageSizeGb", n)?;
        }
        if let Some(o) = &input.image_override {
            if o.is_empty() || o.len() > 512 || o.chars().any(char::is_whitespace) {
                return Err(Error::invalid(
                    "imageOverride",
                    "must be a container image reference without spaces",
                ));
            }
        }
        let (postgres_version, image_type, storage, password_enc, source) = match input
            .source_image_id
        {
            Some(image_id) => {
                let img = image::Entity::find_by_id(image_id)
                    .one(&self.db)
                    .await?
                    .filter(|i| i.state != ImageState::Deleted)
                    .ok_or_else(|| Error::not_found("image", image_id, Some("sourceImageId")))?;
                if img.state != ImageState::Ready {
                    return Err(Error::invalid(
                        "sourceImageId",
                        format!("image {} is {}, not ready", img.name, state_word(img.state)),
                    ));
                }
                if input.password.is_some() {
                    warnings.push(
                        "password ignored: a restored instance keeps the source image's password"
                            .to_owned(),
                    );
                }
                if let Some(v) = &input.postgres_version {
                    if *v != img.postgres_version {
                        warnings.push(format!(
                            "postgresVersion {v} ignored: the image is PostgreSQL {}",
                            img.postgres_version
                        ));
                    }
                }
                if let Some(t) = input.image_type {
                    if t != img.image_type {
                        warnings.push(
                            "imageType ignored: a restored instance keeps the image's type"
                                .to_owned(),
                        );
                    }
                }
                let size = input
                    .storage_size_gb
                    .unwrap_or(img.storage_size_gb)
                    .max(img.storage_size_gb);
                // The password is copied by the get_source_password step; until then none is stored.
                (
                    img.postgres_version.clone(),
                    img.image_type,
                    size,
                    None,
                    Some(img.id),
                )
            }
            None => {
                let pw = input.password.as_ref().ok_or_else(|| {
                    Error::invalid("password", "a password is required for a new instance")
                })?;
                validate::password("password", pw.expose())?;
                let v = input.postgres_version.clone().unwrap_or_else(|| {
                    self.postgres_versions
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "15".into())
                });
                if !self.postgres_versions.contains(&v) {
                    return Err(Error::invalid(
                        "postgresVersion",
                        format!(
                            "PostgreSQL {v} is not available here (available: {})",
                            self.postgres_versions.join(", ")
                        ),
                    ));
                }
                let enc = self
                    .cipher
                    .encrypt(pw)
                    .map_err(|e| Error::internal("encrypting the password", e))?;
                (
                    v,
                    input.image_type.unwrap_or(entity::ImageType::Stock),
                    input.storage_size_gb.unwrap_or(10),
                    Some(enc),
                    None,
                )
            }
        };
        if self.platform == "local"
            && (input.image_override.is_some() || input.runtime_image_id.is_some())
        {
            warnings.push("the local platform runs the installed PostgreSQL binaries; the runtime image setting is recorded but not used".to_owned());
        }
        self.check_task_quota(actor).await?;
        let id = Uuid::new_v4();
        let task_id = Uuid::new_v4();
        let k8s_name = format!("{}-{}", input.name, &id.simple().to_string()[..8]);
        let now = Utc::now();
        // Writes come first in the transaction (no read-then-write), so concurrent requests
        // wait on the database's write lock and the unique indexes decide who wins.
        let txn = self.db.begin().await?;
        let row = instance::ActiveModel {
            id: Set(id),
            name: Set(input.name.clone()),
            live_name: Set(Some(input.name.clone())),
            k8s_name: Set(k8s_name),
            dns_label: Set(dns_label.clone()),
            live_dns_label: Set(Some(dns_label.clone())),
            namespace: Set(self.namespace.clone()),
            platform: Set(self.platform.to_owned()),
            postgres_version: Set(postgres_version),
            image_type: Set(image_type),
            runtime_image: Set(input
                .image_override
                .clone()
                .or(input.runtime_image_id.map(|u| u.to_string()))),
            storage_size_gb: Set(storage),
            state: Set(InstanceState::Creating),
            host: Set(None),
            port: Set(None),
            source_image_id: Set(source),
            password_enc: Set(password_enc),
            labels: Set(serde_json::json!({})),
            error: Set(None),
            task_id: Set(Some(task_id)),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let inserted = match row.insert(&txn).await {
            Ok(m) => m,
            Err(e) if is_unique_violation(&e) => {
                drop(txn);
                return Err(self.instance_conflict(&input.name, &dns_label).await);
            }
            Err(e) => return Err(e.into()),
        };
        let task_input = serde_json::json!({ "name": input.name, "source_image_id": source });
        let t = self
            .engine
            .enqueue(
                &txn,
                task_id,
                workflows::CREATE_INSTANCE,
                Some(id),
                task_input,
                Some(actor.name.clone()),
            )
            .await
            .map_err(engine_err)?;
        match txn.commit().await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(self.instance_conflict(&input.name, &dns_label).await)
            }
            Err(e) => return Err(e.into()),
        }
        self.engine.wake(task_id);
        Ok(Created {
            instance: inserted,
            task: t,
            warnings,
        })
    }

    /// Which of name and DNS label is taken.
    async fn instance_conflict(&self, name: &str, dns_label: &str) -> Error {
        let taken = instance::Entity::find()
            .filter(instance::Column::LiveName.eq(name.to_owned()))
            .one(&self.db)
            .await;
        if matches!(taken, Ok(Some(_))) {
            return Error::conflict("name", format!("an instance named {name} already exists"));
        }
        Error::conflict("dnsLabel", format!("DNS label {dns_label} is in use"))
    }

    /// Deletes an instance (a task that stops it and removes its resources).
    pub async fn delete_instance(&self, actor: &Actor, id: Uuid) -> Result<task::Model> {
        actor.require(entity::api_token::Role::Operator)?;
        self.check_task_quota(actor).await?;
        let txn = self.db.begin().await?;
        let res = instance::Entity::update_many()
            .col_expr(
                instance::Column::State,
                sea_orm::sea_query::Expr::value(InstanceState::Deleting),
            )
            .filter(instance::Column::Id.eq(id))
            .filter(instance::Column::State.is_in([InstanceState::Running, InstanceState::Failed]))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            drop(txn);
            let inst = instance::Entity::find_by_id(id)
                .one(&self.db)
                .await?
                .filter(|i| i.state != InstanceState::Deleted)
                .ok_or_else(|| Error::not_found("instance", id, None))?;
            return Err(Error::Conflict {
                field: None,
                message: format!(
                    "instance {} is {}; wait for it or cancel its task",
                    inst.name,
                    istate_word(inst.state)
                ),
            });
        }
        let inst = instance::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("instance", id, None))?;
        let task_id = Uuid::new_v4();
        let t = self
            .engine
            .enqueue(
                &txn,
                task_id,
                workflows::DELETE_INSTANCE,
                Some(id),
                serde_json::json!({ "name": inst.name }),
                Some(actor.name.clone()),
            )
            .await
            .map_err(engine_err)?;
        txn.commit().await?;
        self.engine.wake(task_id);
        Ok(t)
    }

    /// One instance (deleted ones included, so old tasks still resolve).
    pub async fn instance(&self, id: Uuid) -> Result<Option<instance::Model>> {
        Ok(instance::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Instances, newest first.
    pub async fn instances(
        &self,
        first: Option<i32>,
        after: Option<&str>,
        state: Option<InstanceState>,
    ) -> Result<Page<instance::Model>> {
        let n = super::page_size(first)?;
        let mut q = instance::Entity::find()
            .order_by_desc(instance::Column::CreatedAt)
            .order_by_desc(instance::Column::Id);
        if let Some(s) = state {
            q = q.filter(instance::Column::State.eq(s));
        }
        if let Some(a) = after {
            q = q.filter(older_than!(
                instance::Column::CreatedAt,
                instance::Column::Id,
                super::decode_cursor(a)?
            ));
        }
        let mut items = q.limit(n + 1).all(&self.db).await?;
        let has_next = items.len() as u64 > n;
        items.truncate(n as usize);
        Ok(Page { items, has_next })
    }
}

pub(crate) fn engine_err(e: crate::tasks::EngineError) -> Error {
    Error::internal("enqueueing the task", e)
}

pub(crate) fn state_word(s: ImageState) -> &'static str {
    match s {
        ImageState::Creating => "creating",
        ImageState::Ready => "ready",
        ImageState::Failed => "failed",
        ImageState::Deleting => "deleting",
        ImageState::Deleted => "deleted",
    }
}

pub(crate) fn istate_word(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Creating => "creating",
        InstanceState::Running => "running",
        InstanceState::Failed => "failed",
        InstanceState::Deleting => "deleting",
        InstanceState::Deleted => "deleted",
    }
}
