//! API types: the SPEC contract's objects and enums, wrapping entity rows (entities carry no
//! GraphQL derives).

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{image, instance, task, task_log, task_step};
use uuid::Uuid;

use super::{gql_error, parts};

/// Instance lifecycle.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum InstanceState {
    Creating,
    Running,
    Failed,
    Deleting,
    Deleted,
}

/// Image lifecycle.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ImageState {
    Creating,
    Ready,
    Failed,
    Deleting,
    Deleted,
}

/// Task lifecycle.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelling,
    Cancelled,
}

/// Step lifecycle.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// Image type.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ImageType {
    Stock,
    PgDurable,
}

macro_rules! map_enum {
    ($from:ty => $to:ty { $($v:ident),* }) => {
        impl From<$from> for $to {
            fn from(s: $from) -> Self { match s { $(<$from>::$v => Self::$v),* } }
        }
        impl From<$to> for $from {
            fn from(s: $to) -> Self { match s { $(<$to>::$v => Self::$v),* } }
        }
    };
}
map_enum!(entity::instance::InstanceState => InstanceState { Creating, Running, Failed, Deleting, Deleted });
map_enum!(entity::image::ImageState => ImageState { Creating, Ready, Failed, Deleting, Deleted });
map_enum!(entity::task::TaskState => TaskState { Queued, Running, Succeeded, Failed, Cancelling, Cancelled });
map_enum!(entity::task_step::StepState => StepState { Pending, Running, Succeeded, Failed, Skipped });
map_enum!(entity::ImageType => ImageType { Stock, PgDurable });

/// A PostgreSQL server Snapgres manages.
pub struct Instance(pub instance::Model);

/// How to connect (the URI has no password).
#[derive(SimpleObject)]
#[graphql(name = "Connection")]
pub struct ConnectionInfo {
    pub host: String,
    pub port: i32,
    pub user: String,
    pub database: String,
    pub uri: String,
}

#[Object]
impl Instance {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn k8s_name(&self) -> &str {
        &self.0.k8s_name
    }
    async fn dns_label(&self) -> &str {
        &self.0.dns_label
    }
    async fn namespace(&self) -> &str {
        &self.0.namespace
    }
    async fn platform(&self) -> &str {
        &self.0.platform
    }
    async fn state(&self) -> InstanceState {
        self.0.state.into()
    }
    async fn postgres_version(&self) -> &str {
        &self.0.postgres_version
    }
    async fn image_type(&self) -> ImageType {
        self.0.image_type.into()
    }
    async fn storage_size_gb(&self) -> i32 {
        self.0.storage_size_gb
    }
    /// Why the instance failed, if it did.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn source_image(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Image>> {
        let (svc, _) = parts(ctx)?;
        match self.0.source_image_id {
            None => Ok(None),
            Some(id) => Ok(svc.image(id).await.map_err(gql_error)?.map(Image)),
        }
    }
    /// Where to connect, once the instance has an address.
    async fn connection(&self) -> Option<ConnectionInfo> {
        crate::service::instances::connection_of(&self.0).map(|c| ConnectionInfo {
            host: c.host,
            port: c.port,
            user: c.user,
            database: c.database,
            uri: c.uri,
        })
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn tasks(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Task>> {
        let (svc, _) = parts(ctx)?;
        Ok(svc
            .tasks_of(self.0.id)
            .await
            .map_err(gql_error)?
            .into_iter()
            .map(Task)
            .collect())
    }
}

/// A logical snapshot of one instance.
pub struct Image(pub image::Model);

#[Object]
impl Image {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn state(&self) -> ImageState {
        self.0.state.into()
    }
    async fn source_instance(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Instance>> {
        let (svc, _) = parts(ctx)?;
        match self.0.source_instance_id {
            None => Ok(None),
            Some(id) => Ok(svc.instance(id).await.map_err(gql_error)?.map(Instance)),
        }
    }
    /// Name of the source instance (kept even after it is deleted).
    async fn source_instance_name(&self) -> &str {
        &self.0.source_instance_name
    }
    async fn postgres_version(&self) -> &str {
        &self.0.postgres_version
    }
    async fn image_type(&self) -> ImageType {
        self.0.image_type.into()
    }
    async fn storage_size_gb(&self) -> i32 {
        self.0.storage_size_gb
    }
    async fn size_bytes(&self) -> Option<f64> {
        self.0.size_bytes.map(|n| n as f64)
    }
    /// sha256 of the image manifest, which lists every object's sha256.
    async fn checksum(&self) -> Option<&str> {
        self.0.checksum.as_deref()
    }
    async fn databases(&self) -> Vec<String> {
        serde_json::from_value(self.0.databases.clone()).unwrap_or_default()
    }
    /// Where the image is stored: store kind, container and key prefix.
    async fn location(&self) -> String {
        format!("{}:{}/{}", self.0.store, self.0.container, self.0.path)
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn ready_at(&self) -> Option<DateTime<Utc>> {
        self.0.ready_at
    }
    async fn task(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Task>> {
        let (svc, _) = parts(ctx)?;
        match self.0.task_id {
            None => Ok(None),
            Some(id) => Ok(svc.task(id).await.map_err(gql_error)?.map(Task)),
        }
    }
}

/// One durable run of a workflow.
pub struct Task(pub task::Model);

#[Object]
impl Task {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    async fn state(&self) -> TaskState {
        self.0.state.into()
    }
    /// The instance or image the task works on.
    async fn target_id(&self) -> Option<Uuid> {
        self.0.target_id
    }
    /// What was asked (never contains a password).
    async fn input(&self) -> async_graphql::Json<serde_json::Value> {
        async_graphql::Json(self.0.input.clone())
    }
    /// How many times a worker has picked the task up.
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }
    /// Name of the token that started the task.
    async fn created_by(&self) -> Option<&str> {
        self.0.created_by.as_deref()
    }
    async fn steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TaskStep>> {
        let (svc, _) = parts(ctx)?;
        Ok(svc
            .steps(self.0.id)
            .await
            .map_err(gql_error)?
            .into_iter()
            .map(TaskStep)
            .collect())
    }
    /// Fraction done, 0 to 1: finished steps plus the running step's byte progress.
    async fn progress(&self, ctx: &Context<'_>) -> async_graphql::Result<f64> {
        if self.0.state == entity::task::TaskState::Succeeded {
            return Ok(1.0);
        }
        let (svc, _) = parts(ctx)?;
        let steps = svc.steps(self.0.id).await.map_err(gql_error)?;
        if steps.is_empty() {
            return Ok(0.0);
        }
        let mut done = 0.0;
        for s in &steps {
            match s.state {
                entity::task_step::StepState::Succeeded | entity::task_step::StepState::Skipped => {
                    done += 1.0
                }
                entity::task_step::StepState::Running => {
                    if let (Some(d), Some(t)) = (s.done, s.total) {
                        if t > 0.0 {
                            done += (d / t).clamp(0.0, 1.0);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(done / steps.len() as f64)
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    async fn logs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] last: Option<i32>,
    ) -> async_graphql::Result<Vec<TaskLog>> {
        let (svc, _) = parts(ctx)?;
        let n = last.unwrap_or(100).clamp(0, 1000) as u64;
        Ok(svc
            .logs(self.0.id, n)
            .await
            .map_err(gql_error)?
            .into_iter()
            .map(TaskLog)
            .collect())
    }
}

/// One ordered step of a task.
pub struct TaskStep(pub task_step::Model);

#[Object]
impl TaskStep {
    async fn position(&self) -> i32 {
        self.0.position
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn state(&self) -> StepState {
        self.0.state.into()
    }
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    async fn done(&self) -> Option<f64> {
        self.0.done
    }
    async fn total(&self) -> Option<f64> {
        self.0.total
    }
    async fn unit(&self) -> Option<&str> {
        self.0.unit.as_deref()
    }
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}

/// A timestamped line of a task's log.
pub struct TaskLog(pub task_log::Model);

#[Object]
impl TaskLog {
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn level(&self) -> &str {
        &self.0.level
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
}

/// One change of a task: the task now, plus the step or log line that changed, if any.
pub struct TaskEvent {
    pub task: task::Model,
    pub step: Option<task_step::Model>,
    pub log: Option<task_log::Model>,
}

#[Object]
impl TaskEvent {
    async fn task(&self) -> Task {
        Task(self.task.clone())
    }
    async fn step(&self) -> Option<TaskStep> {
        self.step.clone().map(TaskStep)
    }
    async fn log(&self) -> Option<TaskLog> {
        self.log.clone().map(TaskLog)
    }
}
