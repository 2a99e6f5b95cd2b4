//! What a workflow is to the engine: named steps with retry policies, the step context, and the
//! retryable/fatal error split decided where an error happens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::fence::Fence;

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a step failed, and whether another try can help.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A transient failure: the engine retries per the step's policy.
    #[error("{}", error_chain(.0.as_ref()))]
    Retryable(BoxError),
    /// A failure no retry will fix.
    #[error("{}", error_chain(.0.as_ref()))]
    Fatal(BoxError),
    /// The task was cancelled while the step ran.
    #[error("cancelled")]
    Cancelled,
    /// This worker no longer holds the task's lease; another worker owns it now.
    #[error("lease lost to another worker")]
    LeaseLost,
}

impl StepError {
    /// A retryable error from a message.
    pub fn retryable(msg: impl Into<String>) -> Self {
        Self::Retryable(msg.into().into())
    }
    /// A fatal error from a message.
    pub fn fatal(msg: impl Into<String>) -> Self {
        Self::Fatal(msg.into().into())
    }
}

/// The message of an error and all its sources, joined by `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// `.retryable()?` / `.fatal()?` on any result, as the place the error happens decides.
pub trait ResultExt<T> {
    /// Marks the error as transient.
    fn retryable(self) -> Result<T, StepError>;
    /// Marks the error as permanent.
    fn fatal(self) -> Result<T, StepError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> ResultExt<T> for Result<T, E> {
    fn retryable(self) -> Result<T, StepError> {
        self.map_err(|e| StepError::Retryable(Box::new(e)))
    }
    fn fatal(self) -> Result<T, StepError> {
        self.map_err(|e| StepError::Fatal(Box::new(e)))
    }
}

/// How often and how long a step is tried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries in one claim of the task, the first included.
    pub max_attempts: u32,
    /// Wait after the first failure; doubles after each further one.
    pub initial_backoff: Duration,
    /// Longest wait between tries.
    pub max_backoff: Duration,
    /// Limit of one try.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// One try only.
    pub fn once(timeout: Duration) -> Self {
        Self {
            max_attempts: 1,
            timeout,
            ..Self::default()
        }
    }

    /// The wait before try `next_attempt` (2 = the first retry): exponential with ±25 % jitter.
    pub fn backoff(&self, next_attempt: u32) -> Duration {
        use rand::Rng;
        let exp = next_attempt.saturating_sub(2).min(20);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let jitter = rand::thread_rng().gen_range(0.75..=1.25);
        base.mul_f64(jitter)
    }
}

/// A step as a workflow declares it.
#[derive(Debug, Clone, Copy)]
pub struct StepDef {
    pub name: &'static str,
    pub policy: RetryPolicy,
}

impl StepDef {
    /// A step with a policy.
    pub const fn new(name: &'static str, policy: RetryPolicy) -> Self {
        Self { name, policy }
    }
}

/// Why cleanup runs.
#[derive(Debug, Clone)]
pub enum Outcome {
    Failed(String),
    Cancelled,
}

impl Outcome {
    /// The error recorded on the task's target: the failure, or "cancelled".
    pub fn message(&self) -> String {
        match self {
            Self::Failed(m) => m.clone(),
            Self::Cancelled => "cancelled".to_owned(),
        }
    }
}

/// A workflow: a task kind with its ordered steps, each idempotent, and its cleanup.
#[async_trait::async_trait]
pub trait Workflow: Send + Sync + 'static {
    /// The task kind, e.g. `create_image`.
    fn kind(&self) -> &'static str;
    /// The ordered steps for this input (written as rows when the task is enqueued).
    fn steps(&self, input: &serde_json::Value) -> Vec<StepDef>;
    /// Runs one step. Must be idempotent: look at what exists before acting.
    async fn run_step(&self, step: &str, ctx: &StepCtx) -> Result<(), StepError>;
    /// Undoes what the task made after a failure or cancellation. Must be idempotent.
    async fn cleanup(&self, ctx: &StepCtx, outcome: &Outcome) -> Result<(), StepError>;
}

/// What a step sees: the task, a fenced way to record progress and logs, and cancellation.
pub struct StepCtx {
    pub task_id: Uuid,
    pub target_id: Option<Uuid>,
    pub input: serde_json::Value,
    pub(super) step: Mutex<Option<StepHandle>>,
    pub(super) fence: Arc<Fence>,
    pub(super) context: Mutex<serde_json::Value>,
    pub(super) cancel: CancellationToken,
}

pub(super) struct StepHandle {
    pub id: Uuid,
    pub name: &'static str,
    pub last_progress: Option<Instant>,
}

impl StepCtx {
    /// Cancelled when the task is cancelled or the lease is lost: long steps select on it.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The task input field `key`.
    pub fn input<T: DeserializeOwned>(&self, key: &str) -> Result<T, StepError> {
        let v = self
            .input
            .get(key)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        serde_json::from_value(v)
            .map_err(|e| StepError::fatal(format!("task input field {key}: {e}")))
    }

    /// A value an earlier step stored with [`StepCtx::put`].
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StepError> {
        let ctx = self.context.lock().await;
        match ctx.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| StepError::fatal(format!("task context field {key}: {e}"))),
        }
    }

    /// Stores a value for later steps (persisted before returning; never a secret).
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StepError> {
        let v = serde_json::to_value(value)
            .map_err(|e| StepError::fatal(format!("serialising {key}: {e}")))?;
        let mut ctx = self.context.lock().await;
        let mut next = ctx.clone();
        if let serde_json::Value::Object(m) = &mut next {
            m.insert(key.to_owned(), v);
        } else {
            next = serde_json::json!({ key: v });
        }
        self.fence.save_context(&next).await?;
        *ctx = next;
        Ok(())
    }

    /// Writes a line to the task log.
    pub async fn log(&self, level: &str, message: impl Into<String>) -> Result<(), StepError> {
        self.fence.log(level, &message.into()).await
    }

    /// Reports progress of the running step. Writes at most 4 times a second; `force` always writes.
    pub async fn progress(
        &self,
        done: f64,
        total: Option<f64>,
        unit: &str,
        force: bool,
    ) -> Result<(), StepError> {
        let mut guard = self.step.lock().await;
        let Some(h) = guard.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        if !force
            && h.last_progress
                .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250))
        {
            return Ok(());
        }
        h.last_progress = Some(now);
        let id = h.id;
        drop(guard);
        self.fence.step_progress(id, done, total, unit).await
    }

    /// Sets the running step's message (a human-readable status line).
    pub async fn message(&self, message: impl Into<String>) -> Result<(), StepError> {
        let id = match self.step.lock().await.as_ref() {
            Some(h) => h.id,
            None => return Ok(()),
        };
        self.fence.step_message(id, &message.into()).await
    }

    /// The name of the running step.
    pub async fn step_name(&self) -> Option<&'static str> {
        self.step.lock().await.as_ref().map(|h| h.name)
    }
}
