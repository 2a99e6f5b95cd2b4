//! `instance`: a PostgreSQL server Snapgres manages.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ImageType;

/// Lifecycle of an instance: `creating`→`running`|`failed`; `deleting`→`deleted`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    #[sea_orm(string_value = "creating")]
    Creating,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "deleting")]
    Deleting,
    #[sea_orm(string_value = "deleted")]
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "instance")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// `name` while the instance is live, NULL once deleted: a unique index on it makes the
    /// database itself settle concurrent requests for the same name.
    #[sea_orm(unique)]
    pub live_name: Option<String>,
    pub k8s_name: String,
    pub dns_label: String,
    /// Same role as `live_name`, for the DNS label.
    #[sea_orm(unique)]
    pub live_dns_label: Option<String>,
    pub namespace: String,
    pub platform: String,
    pub postgres_version: String,
    pub image_type: ImageType,
    pub runtime_image: Option<String>,
    pub storage_size_gb: i32,
    pub state: InstanceState,
    pub host: Option<String>,
    pub port: Option<i32>,
    pub source_image_id: Option<Uuid>,
    /// AES-256-GCM ciphertext of the superuser password (never plaintext).
    #[serde(skip_serializing)]
    pub password_enc: Option<String>,
    pub labels: Json,
    pub error: Option<String>,
    pub task_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
