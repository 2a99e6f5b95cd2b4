//! `task_log`: timestamped lines per task (job output, retries, warnings).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "task_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub task_id: Uuid,
    pub at: DateTimeUtc,
    pub level: String,
    pub message: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
