//! In-process fan-out of task events (step changes, progress ticks, log lines, state changes).

use entity::task::TaskState;
use entity::{task_log, task_step};
use tokio::sync::broadcast;
use uuid::Uuid;

/// One change of a task.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    pub task_id: Uuid,
    /// The task's state after the change.
    pub state: TaskState,
    /// The step that changed, if a step changed.
    pub step: Option<task_step::Model>,
    /// The log line written, if one was.
    pub log: Option<task_log::Model>,
}

/// Broadcasts [`TaskEvent`]s to every subscriber.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<TaskEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus that keeps the last 4096 events for slow subscribers.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }

    /// Publishes an event; nobody listening is fine.
    pub fn publish(&self, ev: TaskEvent) {
        let _ = self.tx.send(ev);
    }

    /// Subscribes to every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskEvent> {
        self.tx.subscribe()
    }
}
