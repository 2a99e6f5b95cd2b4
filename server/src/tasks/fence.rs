//! Every write a worker makes for a task, each fenced on the worker's lease: the write happens
//! in a transaction that first renews the lease `WHERE attempt = mine AND lease_owner = me`, so a
//! stale worker (whose lease expired and was taken over) changes nothing.

use chrono::Utc;
use entity::task::{self, TaskState};
use entity::task_log;
use entity::task_step::{self, StepState};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, Set, TransactionTrait,
};
use std::time::Duration;
use uuid::Uuid;

use super::events::{EventBus, TaskEvent};
use super::step::StepError;

/// A worker's claim on a task.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub task_id: Uuid,
    pub attempt: i32,
    pub owner: String,
    pub lease: Duration,
}

fn db_err(e: DbErr) -> StepError {
    StepError::Retryable(Box::new(e))
}

impl Fence {
    fn lease_until(&self) -> chrono::DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.lease)
                .unwrap_or_else(|_| chrono::Duration::seconds(30))
    }

    /// Renews the lease inside `c` and returns the task's state; `LeaseLost` if no longer ours.
    async fn check<C: ConnectionTrait>(&self, c: &C) -> Result<TaskState, StepError> {
        let res = task::Entity::update_many()
            .col_expr(
                task::Column::LeaseExpiresAt,
                Expr::value(self.lease_until()),
            )
            .filter(task::Column::Id.eq(self.task_id))
            .filter(task::Column::Attempt.eq(self.attempt))
            .filter(task::Column::LeaseOwner.eq(self.owner.clone()))
            .filter(task::Column::State.is_in([TaskState::Running, TaskState::Cancelling]))
            .exec(c)
            .await
            .map_err(db_err)?;
        if res.rows_affected != 1 {
            return Err(StepError::LeaseLost);
        }
        let t = task::Entity::find_by_id(self.task_id)
            .one(c)
            .await
            .map_err(db_err)?;
        t.map(|t| t.state).ok_or(StepError::LeaseLost)
    }

    /// Renews the lease (the heartbeat) and returns the task's state.
    pub async fn renew(&self) -> Result<TaskState, StepError> {
        let txn = self.db.begin().await.map_err(db_err)?;
        let state = self.check(&txn).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(state)
    }

    /// Saves the workflow context.
    pub async fn save_context(&self, ctx: &serde_json::Value) -> Result<(), StepError> {
        let txn = self.db.begin().await.map_err(db_err)?;
        self.check(&txn).await?;
        task::Entity::update_many()
            .col_expr(task::Column::Context, Expr::value(ctx.clone()))
            .filter(task::Column::Id.eq(self.task_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)
    }

    /// Appends a log line.
    pub async fn log(&self, level: &str, message: &str) -> Result<(), StepError> {
        let txn = self.db.begin().await.map_err(db_err)?;
        let state = self.check(&txn).await?;
        let row = task_log::ActiveModel {
            task_id: Set(self.task_id),
            at: Set(Utc::now()),
            level: Set(level.to_owned()),
            message: Set(message.to_owned()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        self.bus.publish(TaskEvent {
            task_id: self.task_id,
            state,
            step: None,
            log: Some(row),
        });
        Ok(())
    }

    async fn update_step(
        &self,
        id: Uuid,
        f: impl FnOnce(&mut task_step::ActiveModel, &task_step::Model),
    ) -> Result<task_step::Model, StepError> {
        let txn = self.db.begin().await.map_err(db_err)?;
        let state = self.check(&txn).await?;
        let cur = task_step::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or_else(|| StepError::fatal(format!("step {id} vanished")))?;
        let mut am: task_step::ActiveModel = cur.clone().into();
        f(&mut am, &cur);
        let m = am.update(&txn).await.map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        self.bus.publish(TaskEvent {
            task_id: self.task_id,
            state,
            step: Some(m.clone()),
            log: None,
        });
        Ok(m)
    }

    /// Marks a step running as its next attempt.
    pub async fn step_start(&self, id: Uuid) -> Result<task_step::Model, StepError> {
        self.update_step(id, |am, cur| {
            am.state = Set(StepState::Running);
            am.attempt = Set(cur.attempt + 1);
            am.started_at = Set(Some(Utc::now()));
            am.finished_at = Set(None);
            am.error = Set(None);
        })
        .await
    }

    /// Records progress of a step.
    pub async fn step_progress(
        &self,
        id: Uuid,
        done: f64,
        total: Option<f64>,
        unit: &str,
    ) -> Result<(), StepError> {
        self.update_step(id, |am, _| {
            am.done = Set(Some(done));
            am.total = Set(total);
            am.unit = Set(Some(unit.to_owned()));
        })
        .await
        .map(|_| ())
    }

    /// Sets a step's message.
    pub async fn step_message(&self, id: Uuid, message: &str) -> Result<(), StepError> {
        self.update_step(id, |am, _| am.message = Set(Some(message.to_owned())))
            .await
            .map(|_| ())
    }

    /// Records a failed try that will be retried (the step stays running).
    pub async fn step_retrying(&self, id: Uuid, error: &str) -> Result<(), StepError> {
        self.update_step(id, |am, _| am.error = Set(Some(error.to_owned())))
            .await
            .map(|_| ())
    }

    /// Ends a step.
    pub async fn step_finish(
        &self,
        id: Uuid,
        state: StepState,
        error: Option<String>,
    ) -> Result<(), StepError> {
        self.update_step(id, |am, _| {
            am.state = Set(state);
            am.finished_at = Set(Some(Utc::now()));
            am.error = Set(error);
        })
        .await
        .map(|_| ())
    }

    /// Ends the task: remaining pending/running steps become skipped, the state terminal.
    pub async fn finish_task(
        &self,
        state: TaskState,
        error: Option<String>,
    ) -> Result<(), StepError> {
        let txn = self.db.begin().await.map_err(db_err)?;
        self.check(&txn).await?;
        let open = task_step::Entity::find()
            .filter(task_step::Column::TaskId.eq(self.task_id))
            .filter(task_step::Column::State.is_in([StepState::Pending, StepState::Running]))
            .all(&txn)
            .await
            .map_err(db_err)?;
        let mut changed = Vec::new();
        for s in open {
            let mut am: task_step::ActiveModel = s.into();
            am.state = Set(StepState::Skipped);
            changed.push(am.update(&txn).await.map_err(db_err)?);
        }
        task::Entity::update_many()
            .col_expr(task::Column::State, Expr::value(state))
            .col_expr(task::Column::Error, Expr::value(error))
            .col_expr(task::Column::FinishedAt, Expr::value(Some(Utc::now())))
            .col_expr(
                task::Column::LeaseExpiresAt,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .filter(task::Column::Id.eq(self.task_id))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)?;
        for s in changed {
            self.bus.publish(TaskEvent {
                task_id: self.task_id,
                state: TaskState::Running,
                step: Some(s),
                log: None,
            });
        }
        self.bus.publish(TaskEvent {
            task_id: self.task_id,
            state,
            step: None,
            log: None,
        });
        Ok(())
    }
}
