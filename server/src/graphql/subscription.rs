//! Subscriptions: a task's every change (`taskProgress`, ending after the terminal state) and
//! every task's changes (`taskUpdates`, for list views).

use async_graphql::{Context, Subscription};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::types::TaskEvent;
use super::{gql_error, parts};
use crate::error::Error;
use crate::service::Services;

/// Root subscription.
pub struct Subscription;

/// The task as it is: one event per step, then the last 100 log lines (a subscriber that
/// connects late still sees everything so far).
async fn snapshot(svc: &Services, id: Uuid) -> Result<Vec<TaskEvent>, Error> {
    let task = svc
        .task(id)
        .await?
        .ok_or(Error::not_found("task", id, None))?;
    let steps = svc.steps(id).await?;
    let logs = svc.logs(id, 100).await?;
    let mut out: Vec<TaskEvent> = steps
        .into_iter()
        .map(|s| TaskEvent {
            task: task.clone(),
            step: Some(s),
            log: None,
        })
        .collect();
    out.extend(logs.into_iter().map(|l| TaskEvent {
        task: task.clone(),
        step: None,
        log: Some(l),
    }));
    if out.is_empty() {
        out.push(TaskEvent {
            task,
            step: None,
            log: None,
        });
    }
    Ok(out)
}

#[Subscription]
impl Subscription {
    /// Every step change, progress tick and log line of one task; first the current state of
    /// every step, and the stream ends after the task's terminal state.
    async fn task_progress(
        &self,
        ctx: &Context<'_>,
        task_id: Uuid,
    ) -> async_graphql::Result<impl Stream<Item = TaskEvent>> {
        let (svc, _) = parts(ctx)?;
        let svc = svc.clone();
        // Subscribe before reading the snapshot so nothing falls between the two.
        let mut rx = svc.engine.bus().subscribe();
        let first = snapshot(&svc, task_id).await.map_err(gql_error)?;
        Ok(async_stream::stream! {
            let done = first.first().is_some_and(|e| e.task.state.is_terminal());
            for ev in first {
                yield ev;
            }
            if done {
                return;
            }
            loop {
                match rx.recv().await {
                    Ok(ev) if ev.task_id == task_id => {
                        let Ok(Some(task)) = svc.task(task_id).await else { return };
                        let terminal = ev.state.is_terminal();
                        let mut task = task;
                        // The row may already be ahead of this event; report the event's state.
                        task.state = ev.state;
                        yield TaskEvent { task, step: ev.step, log: ev.log };
                        if terminal {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        let Ok(events) = snapshot(&svc, task_id).await else { return };
                        let terminal = events.first().is_some_and(|e| e.task.state.is_terminal());
                        for ev in events {
                            yield ev;
                        }
                        if terminal {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// The same events for every task (never ends).
    async fn task_updates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = TaskEvent>> {
        let (svc, _) = parts(ctx)?;
        let svc = svc.clone();
        let mut rx = svc.engine.bus().subscribe();
        Ok(async_stream::stream! {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        let Ok(Some(mut task)) = svc.task(ev.task_id).await else { continue };
                        task.state = ev.state;
                        yield TaskEvent { task, step: ev.step, log: ev.log };
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }
}
