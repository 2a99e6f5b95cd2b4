//! `image`: a logical snapshot of one instance, kept in object storage.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ImageType;

/// Lifecycle of an image: `creating`→`ready`|`failed`; `deleting`→`deleted`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum ImageState {
    #[sea_orm(string_value = "creating")]
    Creating,
    #[sea_orm(string_value = "ready")]
    Ready,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "deleting")]
    Deleting,
    #[sea_orm(string_value = "deleted")]
    Deleted,
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "image")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// `name` until the image is deleted, then NULL: unique among non-deleted images.
    #[sea_orm(unique)]
    pub live_name: Option<String>,
    pub description: Option<String>,
    pub source_instance_id: Option<Uuid>,
    pub source_instance_name: String,
    pub postgres_version: String,
    pub image_type: ImageType,
    pub storage_size_gb: i32,
    pub state: ImageState,
    /// Which store (`file`, `az`, `s3`), container/bucket, and key prefix hold the image.
    pub store: String,
    pub container: String,
    pub path: String,
    pub format: String,
    pub size_bytes: Option<i64>,
    /// sha256 of the manifest, which itself lists every object's sha256.
    pub checksum: Option<String>,
    /// Names of the databases in the image (JSON array of strings).
    pub databases: Json,
    /// AES-256-GCM ciphertext of the source instance's superuser password.
    #[serde(skip_serializing)]
    pub source_password_enc: String,
    pub error: Option<String>,
    pub task_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub ready_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
