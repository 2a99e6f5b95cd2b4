//! The business operations GraphQL and REST both call: validate, write, enqueue, read.

pub mod auth;
pub mod images;
pub mod instances;
pub mod tasks;
pub mod validate;

pub use auth::TokenAdmin;

use entity::api_token::Role;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::secrets::Cipher;
use crate::tasks::Engine;

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Actor {
    pub token_id: Uuid,
    pub name: String,
    pub role: Role,
}

impl Actor {
    /// Fails with `FORBIDDEN` unless the actor has at least `role`.
    pub fn require(&self, role: Role) -> Result<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::Forbidden {
                needed: role_name(role),
            })
        }
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Viewer => "viewer",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

/// Everything the operations need.
#[derive(Clone)]
pub struct Services {
    pub db: DatabaseConnection,
    pub engine: Engine,
    pub cipher: Cipher,
    /// Name of the platform new instances go to.
    pub platform: &'static str,
    /// Namespace recorded on instances.
    pub namespace: String,
    /// Store kind and container recorded on new images.
    pub store_kind: &'static str,
    pub store_container: String,
    /// PostgreSQL major versions this installation can run.
    pub postgres_versions: Vec<String>,
    /// Most unfinished tasks one token may have at once.
    pub max_active_tasks_per_token: u64,
}

impl Services {
    /// Refuses a new task when the actor's token already has its limit of unfinished tasks.
    pub async fn check_task_quota(&self, actor: &Actor) -> Result<()> {
        use entity::task::{self, TaskState};
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        let active = task::Entity::find()
            .filter(task::Column::CreatedBy.eq(actor.name.clone()))
            .filter(task::Column::State.is_in([
                TaskState::Queued,
                TaskState::Running,
                TaskState::Cancelling,
            ]))
            .count(&self.db)
            .await?;
        if active >= self.max_active_tasks_per_token {
            return Err(Error::Conflict {
                field: None,
                message: format!(
                    "token {} already has {active} unfinished tasks (limit {}); wait for one to finish",
                    actor.name, self.max_active_tasks_per_token
                ),
            });
        }
        Ok(())
    }
}

/// A page of a newest-first list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

/// Cursor of a newest-first list: creation time and id.
pub fn encode_cursor(at: chrono::DateTime<chrono::Utc>, id: Uuid) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        id
    ))
}

/// Parses [`encode_cursor`]'s output.
pub fn decode_cursor(s: &str) -> Result<(chrono::DateTime<chrono::Utc>, Uuid)> {
    use base64::Engine as _;
    let bad = || Error::invalid("after", "invalid cursor");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = raw.split_once('|').ok_or_else(bad)?;
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad())?
        .with_timezone(&chrono::Utc);
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// Page size: default 20, at most 100.
pub fn page_size(first: Option<i32>) -> Result<u64> {
    match first {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n as u64),
        Some(_) => Err(Error::invalid("first", "first must be between 1 and 100")),
    }
}

/// Keyset condition "older than the cursor" for a newest-first list.
macro_rules! older_than {
    ($col_at:expr, $col_id:expr, $after:expr) => {{
        use sea_orm::ColumnTrait;
        let (at, id) = $after;
        sea_orm::sea_query::Condition::any()
            .add($col_at.lt(at))
            .add(
                sea_orm::sea_query::Condition::all()
                    .add($col_at.eq(at))
                    .add($col_id.lt(id)),
            )
    }};
}
pub(crate) use older_than;
