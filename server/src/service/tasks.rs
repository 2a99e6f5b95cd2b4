//! Task operations: read tasks, their steps and logs; cancel.

use entity::task::{self, TaskState};
use entity::{task_log, task_step};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{older_than, Actor, Page, Services};
use crate::error::{Error, Result};
use crate::tasks::EngineError;

impl Services {
    /// One task.
    pub async fn task(&self, id: Uuid) -> Result<Option<task::Model>> {
        Ok(task::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Tasks, newest first.
    pub async fn tasks(
        &self,
        first: Option<i32>,
        after: Option<&str>,
        state: Option<TaskState>,
    ) -> Result<Page<task::Model>> {
        let n = super::page_size(first)?;
        let mut q = task::Entity::find()
            .order_by_desc(task::Column::CreatedAt)
            .order_by_desc(task::Column::Id);
        if let Some(s) = state {
            q = q.filter(task::Column::State.eq(s));
        }
        if let Some(a) = after {
            q = q.filter(older_than!(
                task::Column::CreatedAt,
                task::Column::Id,
                super::decode_cursor(a)?
            ));
        }
        let mut items = q.limit(n + 1).all(&self.db).await?;
        let has_next = items.len() as u64 > n;
        items.truncate(n as usize);
        Ok(Page { items, has_next })
    }

    /// Tasks that worked on `target`, newest first.
    pub async fn tasks_of(&self, target: Uuid) -> Result<Vec<task::Model>> {
        Ok(task::Entity::find()
            .filter(task::Column::TargetId.eq(target))
            .order_by_desc(task::Column::CreatedAt)
            .limit(100)
            .all(&self.db)
            .await?)
    }

    /// A task's steps in order.
    pub async fn steps(&self, task_id: Uuid) -> Result<Vec<task_step::Model>> {
        Ok(task_step::Entity::find()
            .filter(task_step::Column::TaskId.eq(task_id))
            .order_by_asc(task_step::Column::Position)
            .all(&self.db)
            .await?)
    }

    /// The last `n` log lines of a task, oldest first.
    pub async fn logs(&self, task_id: Uuid, n: u64) -> Result<Vec<task_log::Model>> {
        let mut rows = task_log::Entity::find()
            .filter(task_log::Column::TaskId.eq(task_id))
            .order_by_desc(task_log::Column::Id)
            .limit(n)
            .all(&self.db)
            .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Asks a task to stop; its workflow's cleanup runs.
    pub async fn cancel_task(&self, actor: &Actor, id: Uuid) -> Result<task::Model> {
        actor.require(entity::api_token::Role::Operator)?;
        match self.engine.cancel(id).await {
            Ok(t) => Ok(t),
            Err(EngineError::NotFound(_)) => Err(Error::not_found("task", id, None)),
            Err(EngineError::NotCancellable { state, .. }) => Err(Error::Conflict {
                field: None,
                message: format!("task is already {}", format!("{state:?}").to_lowercase()),
            }),
            Err(EngineError::Db(e)) => Err(e.into()),
            Err(e) => Err(Error::internal("cancelling the task", e)),
        }
    }
}
