//! The seed-compatible REST API (`/api/instances`, `/api/images`, `/api/tasks`): a thin layer
//! over the same services as GraphQL, with HTTP statuses matching the error codes and JSON
//! error bodies `{"error": {"code", "message", "field"}}`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use entity::{image, instance, task, task_step};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;
use crate::http::AppState;
use crate::secrets::Password;
use crate::service::images::CreateImage;
use crate::service::instances::CreateInstance;
use crate::service::{encode_cursor, Actor, Page, Services};

/// The `/api` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/instances", get(list_instances).post(create_instance))
        .route(
            "/api/instances/{id}",
            get(get_instance).delete(delete_instance),
        )
        .route("/api/images", get(list_images).post(create_image))
        .route("/api/images/{id}", get(get_image).delete(delete_image))
        .route("/api/tasks/{id}", get(get_task))
}

/// A REST error response.
pub struct ApiError(pub Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if matches!(e, Error::Database(_) | Error::Internal { .. }) {
            tracing::error!(error = %crate::tasks::error_chain(&e), "REST request failed");
        }
        crate::metrics::METRICS.api_request("rest", e.code());
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // REST bodies are snake_case, so the field named is too.
        let field = e.field().map(snake_case);
        let body = serde_json::json!({ "error": { "code": e.code(), "message": e.public_message(), "field": field } });
        (status, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

async fn actor(s: &Services, headers: &HeaderMap) -> ApiResult<Actor> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(s.authenticate(h).await?)
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| {
        let field = e.to_string().split('`').nth(1).map(str::to_owned);
        ApiError(Error::InvalidInput {
            field,
            message: format!("invalid JSON body: {e}"),
        })
    })
}

fn parse_id(s: &str, what: &'static str) -> ApiResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| ApiError(Error::not_found(what, s, None)))
}

/// An instance as REST shows it (never a password).
#[derive(Serialize)]
pub struct InstanceDto {
    id: Uuid,
    name: String,
    k8s_name: String,
    dns_label: String,
    platform: String,
    state: entity::instance::InstanceState,
    postgres_version: String,
    image_type: entity::ImageType,
    storage_size_gb: i32,
    source_image_id: Option<Uuid>,
    connection: Option<crate::service::instances::ConnectionInfo>,
    error: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<instance::Model> for InstanceDto {
    fn from(m: instance::Model) -> Self {
        let connection = crate::service::instances::connection_of(&m);
        Self {
            id: m.id,
            name: m.name,
            k8s_name: m.k8s_name,
            dns_label: m.dns_label,
            platform: m.platform,
            state: m.state,
            postgres_version: m.postgres_version,
            image_type: m.image_type,
            storage_size_gb: m.storage_size_gb,
            source_image_id: m.source_image_id,
            connection,
            error: m.error,
            created_at: m.created_at,
        }
    }
}

/// An image as REST shows it.
#[derive(Serialize)]
pub struct ImageDto {
    id: Uuid,
    name: String,
    description: Option<String>,
    state: entity::image::ImageState,
    source_instance_id: Option<Uuid>,
    source_instance_name: String,
    postgres_version: String,
    image_type: entity::ImageType,
    size_bytes: Option<i64>,
    checksum: Option<String>,
    databases: serde_json::Value,
    error: Option<String>,
    created_at: DateTime<Utc>,
    ready_at: Option<DateTime<Utc>>,
    task_id: Option<Uuid>,
}

impl From<image::Model> for ImageDto {
    fn from(m: image::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            description: m.description,
            state: m.state,
            source_instance_id: m.source_instance_id,
            source_instance_name: m.source_instance_name,
            postgres_version: m.postgres_version,
            image_type: m.image_type,
            size_bytes: m.size_bytes,
            checksum: m.checksum,
            databases: m.databases,
            error: m.error,
            created_at: m.created_at,
            ready_at: m.ready_at,
            task_id: m.task_id,
        }
    }
}

/// A task with its steps.
#[derive(Serialize)]
pub struct TaskDto {
    id: Uuid,
    kind: String,
    state: entity::task::TaskState,
    target_id: Option<Uuid>,
    input: serde_json::Value,
    attempt: i32,
    error: Option<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    steps: Vec<task_step::Model>,
}

async fn task_dto(s: &Services, t: task::Model) -> ApiResult<TaskDto> {
    let steps = s.steps(t.id).await?;
    Ok(TaskDto {
        id: t.id,
        kind: t.kind,
        state: t.state,
        target_id: t.target_id,
        input: t.input,
        attempt: t.attempt,
        error: t.error,
        created_by: t.created_by,
        created_at: t.created_at,
        started_at: t.started_at,
        finished_at: t.finished_at,
        steps,
    })
}

#[derive(Deserialize)]
struct ListParams {
    limit: Option<i32>,
    after: Option<String>,
    state: Option<String>,
}

fn state_param<T: serde::de::DeserializeOwned>(s: &Option<String>) -> ApiResult<Option<T>> {
    match s {
        None => Ok(None),
        Some(v) => serde_json::from_value(serde_json::Value::String(v.to_lowercase()))
            .map(Some)
            .map_err(|_| ApiError(Error::invalid("state", format!("unknown state {v:?}")))),
    }
}

fn page_json<M, D: Serialize>(
    p: Page<M>,
    key: impl Fn(&M) -> (DateTime<Utc>, Uuid),
    f: impl Fn(M) -> D,
) -> serde_json::Value {
    let next = if p.has_next {
        p.items.last().map(|m| {
            let (a, i) = key(m);
            encode_cursor(a, i)
        })
    } else {
        None
    };
    let items: Vec<D> = p.items.into_iter().map(f).collect();
    serde_json::json!({ "items": items, "next_cursor": next })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInstanceBody {
    name: String,
    password: Option<String>,
    source_image_id: Option<Uuid>,
    dns_label: Option<String>,
    postgres_version: Option<String>,
    storage_size_gb: Option<i32>,
    image_type: Option<entity::ImageType>,
    runtime_image_id: Option<Uuid>,
    image_override: Option<String>,
}

async fn create_instance(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let s = &st.services;
    let who = actor(s, &headers).await?;
    let b: CreateInstanceBody = parse(&body)?;
    let c = s
        .create_instance(
            &who,
            CreateInstance {
                name: b.name,
                password: b.password.map(Password::new),
                dns_label: b.dns_label,
                postgres_version: b.postgres_version,
                storage_size_gb: b.storage_size_gb,
                image_type: b.image_type,
                source_image_id: b.source_image_id,
                runtime_image_id: b.runtime_image_id,
                image_override: b.image_override,
            },
        )
        .await?;
    let task = task_dto(s, c.task).await?;
    let body = serde_json::json!({ "instance": InstanceDto::from(c.instance), "task": task, "warnings": c.warnings });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn list_instances(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let s = &st.services;
    actor(s, &headers).await?;
    let p = s
        .instances(q.limit, q.after.as_deref(), state_param(&q.state)?)
        .await?;
    Ok(Json(page_json(
        p,
        |m| (m.created_at, m.id),
        InstanceDto::from,
    )))
}

async fn get_instance(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<InstanceDto>> {
    let s = &st.services;
    actor(s, &headers).await?;
    let id = parse_id(&id, "instance")?;
    let m = s
        .instance(id)
        .await?
        .ok_or_else(|| Error::not_found("instance", id, None))?;
    Ok(Json(m.into()))
}

async fn delete_instance(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let s = &st.services;
    let who = actor(s, &headers).await?;
    let t = s.delete_instance(&who, parse_id(&id, "instance")?).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "task": task_dto(s, t).await? })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateImageBody {
    name: String,
    instance_id: Uuid,
    description: Option<String>,
}

async fn create_image(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let s = &st.services;
    let who = actor(s, &headers).await?;
    let b: CreateImageBody = parse(&body)?;
    let (img, t) = s
        .create_image(
            &who,
            CreateImage {
                name: b.name,
                instance_id: b.instance_id,
                description: b.description,
            },
        )
        .await?;
    let body = serde_json::json!({ "image": ImageDto::from(img), "task": task_dto(s, t).await? });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn list_images(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let s = &st.services;
    actor(s, &headers).await?;
    let p = s
        .images(q.limit, q.after.as_deref(), state_param(&q.state)?)
        .await?;
    Ok(Json(page_json(p, |m| (m.created_at, m.id), ImageDto::from)))
}

async fn get_image(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ImageDto>> {
    let s = &st.services;
    actor(s, &headers).await?;
    let id = parse_id(&id, "image")?;
    let m = s
        .image(id)
        .await?
        .ok_or_else(|| Error::not_found("image", id, None))?;
    Ok(Json(m.into()))
}

async fn delete_image(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let s = &st.services;
    let who = actor(s, &headers).await?;
    let t = s.delete_image(&who, parse_id(&id, "image")?).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "task": task_dto(s, t).await? })),
    )
        .into_response())
}

async fn get_task(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskDto>> {
    let s = &st.services;
    actor(s, &headers).await?;
    let id = parse_id(&id, "task")?;
    let t = s
        .task(id)
        .await?
        .ok_or_else(|| Error::not_found("task", id, None))?;
    Ok(Json(task_dto(s, t).await?))
}
