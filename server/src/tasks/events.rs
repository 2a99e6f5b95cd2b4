//! Fan-out of task events (step changes, progress ticks, log lines, state changes): in-process
//! with a broadcast channel, and across replicas through PostgreSQL LISTEN/NOTIFY when the CMS
//! database is PostgreSQL (the SQLite default is a single process and keeps the in-process bus).

use entity::task::TaskState;
use entity::{task_log, task_step};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

/// The NOTIFY channel.
const CHANNEL: &str = "snapgres_task_events";
/// NOTIFY payloads must stay under 8000 bytes: long texts are cut in the cross-replica copy.
const TEXT_LIMIT: usize = 1500;

/// One change of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskEvent {
    pub task_id: Uuid,
    /// The task's state after the change.
    pub state: TaskState,
    /// The step that changed, if a step changed.
    pub step: Option<task_step::Model>,
    /// The log line written, if one was.
    pub log: Option<task_log::Model>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    origin: Uuid,
    event: TaskEvent,
}

/// Broadcasts [`TaskEvent`]s to every subscriber (of every replica, on PostgreSQL).
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<TaskEvent>,
    fanout: Option<mpsc::UnboundedSender<TaskEvent>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

fn cut(s: &mut Option<String>) {
    if let Some(t) = s {
        if t.len() > TEXT_LIMIT {
            let mut end = TEXT_LIMIT;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t.truncate(end);
            t.push('…');
        }
    }
}

impl EventBus {
    /// An in-process bus that keeps the last 4096 events for slow subscribers.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx, fanout: None }
    }

    /// A bus that also sends every event to, and receives every event from, the other
    /// replicas on the same PostgreSQL database. On other databases it is [`EventBus::new`].
    pub async fn connect(db: &DatabaseConnection) -> Result<Self, sea_orm::sqlx::Error> {
        let mut bus = Self::new();
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(bus);
        }
        let origin = Uuid::new_v4();
        let pool = db.get_postgres_connection_pool().clone();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let local = bus.tx.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => match serde_json::from_str::<Wire>(n.payload()) {
                        Ok(w) if w.origin != origin => {
                            let _ = local.send(w.event);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed task event"),
                    },
                    Err(e) => {
                        // PgListener reconnects on the next recv; pause so a dead database is not spun on.
                        tracing::warn!(error = %e, "task event listener error");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let (ftx, mut frx) = mpsc::unbounded_channel::<TaskEvent>();
        let db = db.clone();
        tokio::spawn(async move {
            // One sender, one NOTIFY at a time: other replicas see events in publish order.
            while let Some(mut ev) = frx.recv().await {
                if let Some(s) = ev.step.as_mut() {
                    cut(&mut s.error);
                    cut(&mut s.message);
                }
                if let Some(l) = ev.log.as_mut() {
                    let mut m = Some(std::mem::take(&mut l.message));
                    cut(&mut m);
                    l.message = m.unwrap_or_default();
                }
                let Ok(payload) = serde_json::to_string(&Wire { origin, event: ev }) else {
                    continue;
                };
                let stmt = Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_notify($1, $2)",
                    [CHANNEL.into(), payload.into()],
                );
                if let Err(e) = db.execute_raw(stmt).await {
                    tracing::warn!(error = %e, "could not forward a task event to other replicas");
                }
            }
        });
        bus.fanout = Some(ftx);
        Ok(bus)
    }

    /// Publishes an event here and, on PostgreSQL, to the other replicas; nobody listening is fine.
    pub fn publish(&self, ev: TaskEvent) {
        if let Some(f) = &self.fanout {
            let _ = f.send(ev.clone());
        }
        let _ = self.tx.send(ev);
    }

    /// Subscribes to every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskEvent> {
        self.tx.subscribe()
    }
}
