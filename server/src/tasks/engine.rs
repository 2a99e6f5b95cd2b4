//! Workers: claim a queued (or abandoned) task, keep its lease alive, run its steps in order with
//! retries, and finish it; plus enqueue and cancel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use entity::task::{self, TaskState};
use entity::task_step::{self, StepState};
use futures::FutureExt;
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::events::{EventBus, TaskEvent};
use super::fence::Fence;
use super::step::{Outcome, StepCtx, StepDef, StepError, StepHandle, Workflow};

/// Errors of enqueueing, claiming and cancelling.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no workflow for task kind {0:?}")]
    UnknownKind(String),
    #[error("task {0} not found")]
    NotFound(Uuid),
    #[error("task {id} is already {state:?}")]
    NotCancellable { id: Uuid, state: TaskState },
    #[error("task database operation failed")]
    Db(#[from] DbErr),
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Identifies this process in leases.
    pub owner: String,
    /// Lease length; the heartbeat renews it every third of this (at most every second).
    pub lease: Duration,
    /// How often idle workers look for abandoned tasks (new tasks wake them at once).
    pub poll: Duration,
    /// A task claimed more often than this (a crash loop) fails.
    pub max_claims: i32,
    /// Limit of a workflow's cleanup.
    pub cleanup_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            owner: format!(
                "{}-{}",
                std::process::id(),
                &Uuid::new_v4().simple().to_string()[..8]
            ),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            max_claims: 20,
            cleanup_timeout: Duration::from_secs(600),
        }
    }
}

/// The task engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    bus: EventBus,
    cfg: EngineConfig,
    workflows: std::sync::RwLock<HashMap<&'static str, Arc<dyn Workflow>>>,
    wake: Notify,
    shutdown: CancellationToken,
    /// Cancellation tokens of the tasks this process runs, so a local cancel is immediate.
    running: Mutex<HashMap<Uuid, CancellationToken>>,
}

impl Engine {
    /// An engine over a database and event bus; register workflows, then [`Engine::start`].
    pub fn new(db: DatabaseConnection, bus: EventBus, cfg: EngineConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                bus,
                cfg,
                workflows: Default::default(),
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Registers a workflow under its kind.
    pub fn register(&self, wf: Arc<dyn Workflow>) {
        if let Ok(mut m) = self.inner.workflows.write() {
            m.insert(wf.kind(), wf);
        }
    }

    fn workflow(&self, kind: &str) -> Result<Arc<dyn Workflow>, EngineError> {
        self.inner
            .workflows
            .read()
            .ok()
            .and_then(|m| m.get(kind).cloned())
            .ok_or_else(|| EngineError::UnknownKind(kind.to_owned()))
    }

    /// The event bus.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// This engine's lease owner id.
    pub fn owner(&self) -> &str {
        &self.inner.cfg.owner
    }

    /// Writes a queued task and its pending steps through `c` (so the caller can write its own
    /// rows in the same transaction). Call [`Engine::wake`] after the commit.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        c: &C,
        id: Uuid,
        kind: &str,
        target_id: Option<Uuid>,
        input: serde_json::Value,
        created_by: Option<String>,
    ) -> Result<task::Model, EngineError> {
        let wf = self.workflow(kind)?;
        let steps = wf.steps(&input);
        for (i, s) in steps.iter().enumerate() {
            task_step::ActiveModel {
                id: Set(Uuid::new_v4()),
                task_id: Set(id),
                position: Set(i as i32),
                name: Set(s.name.to_owned()),
                state: Set(StepState::Pending),
                attempt: Set(0),
                started_at: Set(None),
                finished_at: Set(None),
                done: Set(None),
                total: Set(None),
                unit: Set(None),
                message: Set(None),
                error: Set(None),
            }
            .insert(c)
            .await?;
        }
        // The task row goes in last: a worker that sees it (even outside a transaction) sees every step.
        let t = task::ActiveModel {
            id: Set(id),
            kind: Set(kind.to_owned()),
            target_id: Set(target_id),
            input: Set(input),
            context: Set(serde_json::json!({})),
            state: Set(TaskState::Queued),
            attempt: Set(0),
            lease_owner: Set(None),
            lease_expires_at: Set(None),
            error: Set(None),
            created_by: Set(created_by),
            created_at: Set(Utc::now()),
            started_at: Set(None),
            finished_at: Set(None),
        }
        .insert(c)
        .await?;
        Ok(t)
    }

    /// Wakes an idle worker (after an enqueue commits) and tells subscribers.
    pub fn wake(&self, task_id: Uuid) {
        self.inner.wake.notify_one();
        self.inner.bus.publish(TaskEvent {
            task_id,
            state: TaskState::Queued,
            step: None,
            log: None,
        });
    }

    /// Asks a task to stop: queued and running tasks become `cancelling`; the worker that holds
    /// it (or the next to claim it) stops the running step and runs the workflow's cleanup.
    pub async fn cancel(&self, id: Uuid) -> Result<task::Model, EngineError> {
        let t = task::Entity::find_by_id(id)
            .one(&self.inner.db)
            .await?
            .ok_or(EngineError::NotFound(id))?;
        if t.state == TaskState::Cancelling {
            return Ok(t);
        }
        let res = task::Entity::update_many()
            .col_expr(task::Column::State, Expr::value(TaskState::Cancelling))
            .filter(task::Column::Id.eq(id))
            .filter(task::Column::State.is_in([TaskState::Queued, TaskState::Running]))
            .exec(&self.inner.db)
            .await?;
        let t = task::Entity::find_by_id(id)
            .one(&self.inner.db)
            .await?
            .ok_or(EngineError::NotFound(id))?;
        if res.rows_affected == 0 && t.state != TaskState::Cancelling {
            return Err(EngineError::NotCancellable { id, state: t.state });
        }
        if let Some(tok) = self.inner.running.lock().await.get(&id) {
            tok.cancel();
        }
        self.inner.wake.notify_one();
        self.inner.bus.publish(TaskEvent {
            task_id: id,
            state: TaskState::Cancelling,
            step: None,
            log: None,
        });
        Ok(t)
    }

    /// Starts `n` workers; they stop after [`Engine::shutdown`].
    /// With `n == 0` this process runs no tasks (an API-only replica).
    pub fn start(&self, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let e = self.clone();
                tokio::spawn(async move { e.worker().await })
            })
            .collect()
    }

    /// Stops claiming new tasks; running steps are interrupted and left for another worker.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    async fn worker(self) {
        loop {
            if self.inner.shutdown.is_cancelled() {
                return;
            }
            match self.claim_one().await {
                Ok(Some(t)) => self.run(t).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.inner.wake.notified() => {}
                        _ = tokio::time::sleep(self.inner.cfg.poll) => {}
                        _ = self.inner.shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %super::step::error_chain(&e), "claiming a task failed");
                    tokio::select! {
                        _ = tokio::time::sleep(self.inner.cfg.poll) => {}
                        _ = self.inner.shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Claims one task: queued, or running/cancelling with an expired lease, or cancelling and
    /// never claimed. The claim is a compare-and-set on the attempt counter, so of several
    /// workers (in any number of processes) exactly one wins.
    pub(crate) async fn claim_one(&self) -> Result<Option<task::Model>, EngineError> {
        let db = &self.inner.db;
        let now = Utc::now();
        let claimable = Condition::any()
            .add(task::Column::State.eq(TaskState::Queued))
            .add(
                Condition::all()
                    .add(task::Column::State.is_in([TaskState::Running, TaskState::Cancelling]))
                    .add(task::Column::LeaseExpiresAt.lt(now)),
            )
            .add(
                Condition::all()
                    .add(task::Column::State.eq(TaskState::Cancelling))
                    .add(task::Column::LeaseOwner.is_null()),
            );
        if db.get_database_backend() == DbBackend::Postgres {
            // PostgreSQL: lock one claimable row, skipping rows other replicas are claiming, so
            // concurrent claimers never queue behind each other. The update below is still the
            // compare-and-set on the attempt, so correctness never rests on the lock alone.
            let txn = db.begin().await?;
            let row = task::Entity::find()
                .filter(claimable.clone())
                .order_by_asc(task::Column::CreatedAt)
                .limit(1)
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .one(&txn)
                .await?;
            let claimed = match row {
                Some(c) => self.try_claim(&txn, &c, now, claimable).await?,
                None => None,
            };
            txn.commit().await?;
            return Ok(claimed);
        }
        let candidates = task::Entity::find()
            .filter(claimable.clone())
            .order_by_asc(task::Column::CreatedAt)
            .limit(8)
            .all(db)
            .await?;
        for c in candidates {
            if let Some(t) = self.try_claim(db, &c, now, claimable.clone()).await? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Compare-and-set claim of one task row.
    async fn try_claim<C: ConnectionTrait>(
        &self,
        db: &C,
        c: &task::Model,
        now: chrono::DateTime<Utc>,
        claimable: Condition,
    ) -> Result<Option<task::Model>, EngineError> {
        {
            let next_state = if c.state == TaskState::Queued {
                TaskState::Running
            } else {
                c.state
            };
            let res = task::Entity::update_many()
                .col_expr(task::Column::Attempt, Expr::value(c.attempt + 1))
                .col_expr(
                    task::Column::LeaseOwner,
                    Expr::value(Some(self.inner.cfg.owner.clone())),
                )
                .col_expr(
                    task::Column::LeaseExpiresAt,
                    Expr::value(Some(
                        now + chrono::Duration::from_std(self.inner.cfg.lease)
                            .unwrap_or_else(|_| chrono::Duration::seconds(30)),
                    )),
                )
                .col_expr(task::Column::State, Expr::value(next_state))
                .col_expr(
                    task::Column::StartedAt,
                    Expr::value(Some(c.started_at.unwrap_or(now))),
                )
                .filter(task::Column::Id.eq(c.id))
                .filter(task::Column::Attempt.eq(c.attempt))
                .filter(task::Column::State.eq(c.state))
                .filter(claimable)
                .exec(db)
                .await?;
            if res.rows_affected == 1 {
                return Ok(task::Entity::find_by_id(c.id).one(db).await?);
            }
        }
        Ok(None)
    }

    /// Runs a claimed task to its end (or until the lease is lost or the server shuts down).
    async fn run(&self, t: task::Model) {
        let fence = Arc::new(Fence {
            db: self.inner.db.clone(),
            bus: self.inner.bus.clone(),
            task_id: t.id,
            attempt: t.attempt,
            owner: self.inner.cfg.owner.clone(),
            lease: self.inner.cfg.lease,
        });
        let cancel = CancellationToken::new();
        let lost = CancellationToken::new();
        self.inner.running.lock().await.insert(t.id, cancel.clone());
        let hb = AbortOnDrop(tokio::spawn(heartbeat(
            Arc::clone(&fence),
            self.inner.cfg.lease,
            cancel.clone(),
            lost.clone(),
        )));
        let ctx = StepCtx {
            task_id: t.id,
            target_id: t.target_id,
            input: t.input.clone(),
            step: Mutex::new(None),
            fence: Arc::clone(&fence),
            context: Mutex::new(t.context.clone()),
            cancel: cancel.clone(),
        };
        let span = tracing::info_span!("task", id = %t.id, kind = %t.kind, attempt = t.attempt);
        let _ = tracing::Instrument::instrument(self.drive(&t, &ctx, &fence, &cancel, &lost), span)
            .await;
        drop(hb);
        self.inner.running.lock().await.remove(&t.id);
    }

    async fn drive(
        &self,
        t: &task::Model,
        ctx: &StepCtx,
        fence: &Fence,
        cancel: &CancellationToken,
        lost: &CancellationToken,
    ) -> Result<(), StepError> {
        bus_state(fence, t.state);
        let wf = match self.workflow(&t.kind) {
            Ok(wf) => wf,
            Err(e) => {
                return fence
                    .finish_task(TaskState::Failed, Some(e.to_string()))
                    .await
            }
        };
        if t.attempt > self.inner.cfg.max_claims {
            let msg = format!("task was claimed {} times without finishing", t.attempt);
            return self.fail(&*wf, ctx, fence, msg).await;
        }
        if t.state == TaskState::Cancelling {
            return self.cancelled(&*wf, ctx, fence).await;
        }
        if t.attempt > 1 {
            fence
                .log(
                    "warn",
                    &format!(
                        "resumed by worker {} (claim {})",
                        self.inner.cfg.owner, t.attempt
                    ),
                )
                .await?;
        }
        let defs: HashMap<&'static str, StepDef> = wf
            .steps(&t.input)
            .into_iter()
            .map(|d| (d.name, d))
            .collect();
        let steps = task_step::Entity::find()
            .filter(task_step::Column::TaskId.eq(t.id))
            .order_by_asc(task_step::Column::Position)
            .all(&self.inner.db)
            .await
            .map_err(|e| StepError::Retryable(Box::new(e)))?;
        for step in steps {
            if matches!(step.state, StepState::Succeeded | StepState::Skipped) {
                continue;
            }
            let Some(def) = defs.get(step.name.as_str()).copied() else {
                let msg = format!("workflow {} has no step {}", t.kind, step.name);
                return self.fail(&*wf, ctx, fence, msg).await;
            };
            *ctx.step.lock().await = Some(StepHandle {
                id: step.id,
                name: def.name,
                last_progress: None,
            });
            let mut tries = 0u32;
            loop {
                tries += 1;
                let started = fence.step_start(step.id).await?;
                let t0 = std::time::Instant::now();
                if started.attempt > 1 && tries == 1 {
                    fence
                        .log(
                            "info",
                            &format!("{}: attempt {} (resuming)", def.name, started.attempt),
                        )
                        .await?;
                }
                // A panic in step code fails the step (it is a bug, not a transient fault)
                // instead of taking the worker down with the task still leased.
                let guarded =
                    std::panic::AssertUnwindSafe(wf.run_step(def.name, ctx)).catch_unwind();
                let result = tokio::select! {
                    r = tokio::time::timeout(def.policy.timeout, guarded) => match r {
                        Ok(Ok(r)) => r,
                        Ok(Err(panic)) => Err(StepError::fatal(format!("{} panicked: {}", def.name, panic_message(&panic)))),
                        Err(_) => Err(StepError::retryable(format!("{} timed out after {:?}", def.name, def.policy.timeout))),
                    },
                    _ = cancel.cancelled() => Err(StepError::Cancelled),
                    _ = self.inner.shutdown.cancelled() => Err(StepError::LeaseLost),
                };
                let result = match result {
                    Err(StepError::Cancelled) if lost.is_cancelled() => Err(StepError::LeaseLost),
                    other => other,
                };
                let outcome = match &result {
                    Ok(()) => "succeeded",
                    Err(StepError::Retryable(_)) => "retryable_error",
                    Err(StepError::Fatal(_)) => "fatal_error",
                    Err(StepError::Cancelled) => "cancelled",
                    Err(StepError::LeaseLost) => "interrupted",
                };
                crate::metrics::METRICS.step(
                    &t.kind,
                    def.name,
                    outcome,
                    t0.elapsed().as_secs_f64(),
                );
                match result {
                    Ok(()) => {
                        fence
                            .step_finish(step.id, StepState::Succeeded, None)
                            .await?;
                        break;
                    }
                    Err(StepError::LeaseLost) => {
                        tracing::warn!(step = def.name, "stopping: lease lost or shutting down");
                        return Err(StepError::LeaseLost);
                    }
                    Err(StepError::Cancelled) => {
                        fence
                            .step_finish(step.id, StepState::Failed, Some("cancelled".into()))
                            .await?;
                        return self.cancelled(&*wf, ctx, fence).await;
                    }
                    Err(StepError::Retryable(e)) if tries < def.policy.max_attempts => {
                        let msg = super::step::error_chain(e.as_ref());
                        let wait = def.policy.backoff(tries + 1);
                        fence.step_retrying(step.id, &msg).await?;
                        fence
                            .log(
                                "warn",
                                &format!(
                                    "{} attempt {} failed: {msg}; retrying in {:.1}s",
                                    def.name,
                                    started.attempt,
                                    wait.as_secs_f64()
                                ),
                            )
                            .await?;
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = cancel.cancelled() => {
                                if lost.is_cancelled() { return Err(StepError::LeaseLost); }
                                fence.step_finish(step.id, StepState::Failed, Some("cancelled".into())).await?;
                                return self.cancelled(&*wf, ctx, fence).await;
                            }
                            _ = self.inner.shutdown.cancelled() => return Err(StepError::LeaseLost),
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        fence
                            .step_finish(step.id, StepState::Failed, Some(msg.clone()))
                            .await?;
                        fence
                            .log("error", &format!("{} failed: {msg}", def.name))
                            .await?;
                        return self
                            .fail(&*wf, ctx, fence, format!("{}: {msg}", def.name))
                            .await;
                    }
                }
            }
        }
        *ctx.step.lock().await = None;
        fence.finish_task(TaskState::Succeeded, None).await
    }

    async fn fail(
        &self,
        wf: &dyn Workflow,
        ctx: &StepCtx,
        fence: &Fence,
        msg: String,
    ) -> Result<(), StepError> {
        *ctx.step.lock().await = None;
        self.cleanup(wf, ctx, fence, &Outcome::Failed(msg.clone()))
            .await?;
        fence.finish_task(TaskState::Failed, Some(msg)).await
    }

    async fn cancelled(
        &self,
        wf: &dyn Workflow,
        ctx: &StepCtx,
        fence: &Fence,
    ) -> Result<(), StepError> {
        *ctx.step.lock().await = None;
        fence.log("info", "cancelled; cleaning up").await?;
        self.cleanup(wf, ctx, fence, &Outcome::Cancelled).await?;
        fence
            .finish_task(TaskState::Cancelled, Some("cancelled".into()))
            .await
    }

    async fn cleanup(
        &self,
        wf: &dyn Workflow,
        ctx: &StepCtx,
        fence: &Fence,
        outcome: &Outcome,
    ) -> Result<(), StepError> {
        // Cleanup must run even though the task's token is cancelled: give it a fresh one.
        let cleanup_ctx = StepCtx {
            task_id: ctx.task_id,
            target_id: ctx.target_id,
            input: ctx.input.clone(),
            step: Mutex::new(None),
            fence: Arc::clone(&ctx.fence),
            context: Mutex::new(ctx.context.lock().await.clone()),
            cancel: CancellationToken::new(),
        };
        match tokio::time::timeout(
            self.inner.cfg.cleanup_timeout,
            wf.cleanup(&cleanup_ctx, outcome),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(StepError::LeaseLost)) => Err(StepError::LeaseLost),
            Ok(Err(e)) => fence.log("error", &format!("cleanup failed: {e}")).await,
            Err(_) => fence.log("error", "cleanup timed out").await,
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Aborts the heartbeat when the run ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bus_state(fence: &Fence, state: TaskState) {
    fence.bus.publish(TaskEvent {
        task_id: fence.task_id,
        state,
        step: None,
        log: None,
    });
}

/// Renews the lease; cancels the task's token when the task is being cancelled or the lease is lost.
async fn heartbeat(
    fence: Arc<Fence>,
    lease: Duration,
    cancel: CancellationToken,
    lost: CancellationToken,
) {
    let every = (lease / 3)
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match fence.renew().await {
            Ok(TaskState::Cancelling) => cancel.cancel(),
            Ok(_) => {}
            Err(StepError::LeaseLost) => {
                lost.cancel();
                cancel.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests;
