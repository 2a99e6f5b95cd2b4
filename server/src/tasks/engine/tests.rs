//! Engine tests on a real SQLite database: retries, exhaustion, fencing, lease takeover, cancellation.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use entity::task::{self, TaskState};
use entity::task_log;
use entity::task_step::{self, StepState};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::*;
use crate::tasks::{Outcome, RetryPolicy, StepCtx, StepDef, StepError, Workflow};

async fn test_db(dir: &tempfile::TempDir) -> DatabaseConnection {
    let url = crate::config::SecretString::new(format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("t.db").display()
    ));
    let db = crate::db::connect(&url).await.unwrap();
    crate::db::migrate(&db).await.unwrap();
    db
}

fn cfg(lease_ms: u64) -> EngineConfig {
    EngineConfig {
        lease: Duration::from_millis(lease_ms),
        poll: Duration::from_millis(50),
        ..EngineConfig::default()
    }
}

/// A scriptable workflow: `fail_first[i]` retryable failures of step i, optional fatal step,
/// optional blocking step, counting runs and cleanups.
#[derive(Default)]
struct Scripted {
    runs: [AtomicU32; 3],
    fail_first: [u32; 3],
    fatal_at: Option<usize>,
    block_at: Option<usize>,
    cleanups: AtomicU32,
    max_attempts: u32,
}

const NAMES: [&str; 3] = ["one", "two", "three"];

#[async_trait::async_trait]
impl Workflow for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn steps(&self, _: &serde_json::Value) -> Vec<StepDef> {
        let p = RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(20),
        };
        NAMES.iter().map(|n| StepDef::new(n, p)).collect()
    }
    async fn run_step(&self, step: &str, ctx: &StepCtx) -> Result<(), StepError> {
        let i = NAMES.iter().position(|n| *n == step).unwrap();
        let n = self.runs[i].fetch_add(1, Ordering::SeqCst) + 1;
        ctx.progress(n as f64, Some(10.0), "things", true).await?;
        if self.block_at == Some(i) {
            ctx.cancelled().cancelled().await;
            return Err(StepError::Cancelled);
        }
        if self.fatal_at == Some(i) {
            return Err(StepError::fatal("disk on fire"));
        }
        if n <= self.fail_first[i] {
            return Err(StepError::retryable(format!("flaky {n}")));
        }
        Ok(())
    }
    async fn cleanup(&self, _: &StepCtx, _: &Outcome) -> Result<(), StepError> {
        self.cleanups.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn enqueue(e: &Engine, db: &DatabaseConnection) -> Uuid {
    let id = Uuid::new_v4();
    e.enqueue(db, id, "scripted", None, serde_json::json!({}), None)
        .await
        .unwrap();
    e.wake(id);
    id
}

async fn wait_terminal(db: &DatabaseConnection, id: Uuid, limit: Duration) -> task::Model {
    let start = Instant::now();
    loop {
        let t = task::Entity::find_by_id(id).one(db).await.unwrap().unwrap();
        if t.state.is_terminal() {
            return t;
        }
        assert!(
            start.elapsed() < limit,
            "task {id} still {:?} after {limit:?}",
            t.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn steps(db: &DatabaseConnection, id: Uuid) -> Vec<task_step::Model> {
    task_step::Entity::find()
        .filter(task_step::Column::TaskId.eq(id))
        .order_by_asc(task_step::Column::Position)
        .all(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn retry_with_backoff_then_success() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(&dir).await;
    let e = Engine::new(db.clone(), EventBus::new(), cfg(2000));
    let wf = Arc::new(Scripted {
        fail_first: [0, 2, 0],
        max_attempts: 4,
        ..Default::default()
    });
    e.register(wf.clone());
    e.start(1);
    let started = Instant::now();
    let id = enqueue(&e, &db).await;
    let t = wait_terminal(&db, id, Duration::from_secs(10)).await;
    assert_eq!(t.state, TaskState::Succeeded, "{:?}", t.error);
    // Two backoffs of ~100 ms and ~200 ms (±25 %) were waited.
    assert!(
        started.elapsed() >= Duration::from_millis(220),
        "{:?}",
        started.elapsed()
    );
    let s = steps(&db, id).await;
    assert_eq!(
        s.iter().map(|s| s.attempt).collect::<Vec<_>>(),
        vec![1, 3, 1]
    );
    assert!(s.iter().all(|s| s.state == StepState::Succeeded));
    let logs = task_log::Entity::find()
        .filter(task_log::Column::TaskId.eq(id))
        .all(&db)
        .await
        .unwrap();
    assert_eq!(
        logs.iter()
            .filter(|l| l.message.contains("retrying"))
            .count(),
        2
    );
    assert_eq!(wf.cleanups.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn retries_exhausted_fails_task_with_step_error_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(&dir).await;
    let e = Engine::new(db.clone(), EventBus::new(), cfg(2000));
    let wf = Arc::new(Scripted {
        fail_first: [0, 99, 0],
        max_attempts: 3,
        ..Default::default()
    });
    e.register(wf.clone());
    e.start(1);
    let id = enqueue(&e, &db).await;
    let t = wait_terminal(&db, id, Duration::from_secs(10)).await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.error.as_deref(), Some("two: flaky 3"));
    let s = steps(&db, id).await;
    assert_eq!(
        (s[1].state, s[1].attempt, s[1].error.as_deref()),
        (StepState::Failed, 3, Some("flaky 3"))
    );
    assert_eq!(s[2].state, StepState::Skipped);
    assert_eq!(wf.runs[2].load(Ordering::SeqCst), 0);
    assert_eq!(wf.cleanups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fatal_error_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(&dir).await;
    let e = Engine::new(db.clone(), EventBus::new(), cfg(2000));
    let wf = Arc::new(Scripted {
        fatal_at: Some(0),
        max_attempts: 5,
        ..Default::default()
    });
    e.register(wf.clone());
    e.start(1);
    let id = enqueue(&e, &db).await;
    let t = wait_terminal(&db, id, Duration::from_secs(10)).await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(wf.runs[0].load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stale_worker_write_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(&dir).await;
    let wf = Arc::new(Scripted::default());
    let a = Engine::new(db.clone(), EventBus::new(), cfg(100));
    let b = Engine::new(db.clone(), EventBus::new(), cfg(5000));
    a.register(wf.clone());
    b.register(wf.clone());
    let id = enqueue(&a, &db).await;
    let claimed_a = a.claim_one().await.unwrap().unwrap();
    assert_eq!(claimed_a.attempt, 1);
    // While A's lease is live nobody else can claim.
    assert!(b.claim_one().await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let claimed_b = b.claim_one().await.unwrap().unwrap();
    assert_eq!((claimed_b.id, claimed_b.attempt), (id, 2));
    let fence_a = Fence {
        db: db.clone(),
        bus: EventBus::new(),
        task_id: id,
        attempt: 1,
        owner: a.owner().to_owned(),
        lease: Duration::from_secs(5),
    };
    let step0 = steps(&db, id).await[0].id;
    assert!(matches!(
        fence_a.step_start(step0).await,
        Err(StepError::LeaseLost)
    ));
    assert!(matches!(
        fence_a.finish_task(TaskState::Succeeded, None).await,
        Err(StepError::LeaseLost)
    ));
    assert!(matches!(
        fence_a.log("info", "stale").await,
        Err(StepError::LeaseLost)
    ));
    let t = task::Entity::find_by_id(id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.state, t.attempt), (TaskState::Running, 2));
    assert_eq!(steps(&db, id).await[0].state, StepState::Pending);
    assert!(task_log::Entity::find()
        .filter(task_log::Column::TaskId.eq(id))
        .all(&db)
        .await
        .unwrap()
        .is_empty());
    // B's fence works.
    let fence_b = Fence {
        attempt: 2,
        owner: b.owner().to_owned(),
        ..fence_a
    };
    fence_b.step_start(step0).await.unwrap();
}

#[test]
fn expired_lease_resumes_at_first_unfinished_step() {
    let dir = tempfile::tempdir().unwrap();
    let wf = Arc::new(Scripted {
        block_at: Some(1),
        ..Default::default()
    });
    // Worker A runs in its own runtime, which is dropped mid-step: a crash, heartbeats and all.
    let id = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let id = rt.block_on(async {
            let db = test_db(&dir).await;
            let a = Engine::new(db.clone(), EventBus::new(), cfg(600));
            a.register(wf.clone());
            a.start(1);
            let id = enqueue(&a, &db).await;
            let start = Instant::now();
            while steps(&db, id).await[1].state != StepState::Running {
                assert!(start.elapsed() < Duration::from_secs(5));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            id
        });
        rt.shutdown_timeout(Duration::from_millis(0));
        id
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = test_db(&dir).await;
        let resumed = Arc::new(Scripted {
            ..Default::default()
        });
        let b = Engine::new(db.clone(), EventBus::new(), cfg(600));
        b.register(resumed.clone());
        b.start(1);
        let t = wait_terminal(&db, id, Duration::from_secs(10)).await;
        assert_eq!((t.state, t.attempt), (TaskState::Succeeded, 2));
        // Step one ran once (under A), step two twice (A, then B), step three once (B).
        assert_eq!(wf.runs[0].load(Ordering::SeqCst), 1);
        assert_eq!(resumed.runs[0].load(Ordering::SeqCst), 0);
        assert_eq!(resumed.runs[1].load(Ordering::SeqCst), 1);
        let s = steps(&db, id).await;
        assert_eq!(
            s.iter().map(|s| s.attempt).collect::<Vec<_>>(),
            vec![1, 2, 1]
        );
    });
}

#[tokio::test]
async fn cancellation_stops_the_step_and_runs_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(&dir).await;
    let e = Engine::new(db.clone(), EventBus::new(), cfg(2000));
    let wf = Arc::new(Scripted {
        block_at: Some(1),
        ..Default::default()
    });
    e.register(wf.clone());
    let mut rx = e.bus().subscribe();
    e.start(2);
    let id = enqueue(&e, &db).await;
    let start = Instant::now();
    while steps(&db, id).await[1].state != StepState::Running {
        let t = task::Entity::find_by_id(id)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{t:?} {:?}",
            steps(&db, id).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    e.cancel(id).await.unwrap();
    let t = wait_terminal(&db, id, Duration::from_secs(5)).await;
    assert_eq!(t.state, TaskState::Cancelled);
    assert_eq!(wf.cleanups.load(Ordering::SeqCst), 1);
    let s = steps(&db, id).await;
    assert_eq!(
        (s[0].state, s[1].state, s[2].state),
        (StepState::Succeeded, StepState::Failed, StepState::Skipped)
    );
    // Cancelling a finished task is refused.
    assert!(matches!(
        e.cancel(id).await,
        Err(EngineError::NotCancellable { .. })
    ));
    // Progress and the terminal state went out on the bus.
    let mut saw_progress = false;
    let mut saw_terminal = false;
    while let Ok(ev) = rx.try_recv() {
        saw_progress |= ev.step.as_ref().is_some_and(|s| s.done.is_some());
        saw_terminal |= ev.task_id == id && ev.state == TaskState::Cancelled;
    }
    assert!(saw_progress && saw_terminal);
}

#[tokio::test]
async fn queued_task_starts_within_100ms() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_db(&dir).await;
    let e = Engine::new(
        db.clone(),
        EventBus::new(),
        EngineConfig {
            poll: Duration::from_secs(30),
            ..cfg(2000)
        },
    );
    e.register(Arc::new(Scripted::default()));
    e.start(2);
    tokio::time::sleep(Duration::from_millis(100)).await; // workers idle, waiting
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let enqueued = Instant::now();
        let id = enqueue(&e, &db).await;
        loop {
            let t = task::Entity::find_by_id(id)
                .one(&db)
                .await
                .unwrap()
                .unwrap();
            if t.state != TaskState::Queued {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        worst = worst.max(enqueued.elapsed());
        wait_terminal(&db, id, Duration::from_secs(5)).await;
    }
    assert!(
        worst < Duration::from_millis(100),
        "slowest start {worst:?}"
    );
}
