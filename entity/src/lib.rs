//! Snapgres data model: one sea-orm entity per table, state enums as active enums.
//!
//! This crate knows nothing about HTTP, GraphQL or Kubernetes; it is the shared vocabulary of the
//! server's layers.

pub mod api_token;
pub mod image;
pub mod instance;
pub mod task;
pub mod task_log;
pub mod task_step;

use sea_orm::entity::prelude::StringLen;

/// The two image types the seed knows; a restore always takes the type from the image.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    sea_orm::EnumIter,
    sea_orm::DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum ImageType {
    #[sea_orm(string_value = "stock")]
    Stock,
    #[sea_orm(string_value = "pg_durable")]
    PgDurable,
}
