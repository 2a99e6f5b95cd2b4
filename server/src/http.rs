//! The HTTP surface: `/graphql` (POST queries, GET GraphiQL), `/graphql/ws` (subscriptions over
//! graphql-transport-ws), `/healthz`, `/readyz`, `/metrics`, and the web console at `/`.

use std::path::PathBuf;

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{DefaultBodyLimit, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, QuerySelect};

use crate::error::Error;
use crate::graphql::schema::AppSchema;
use crate::service::Services;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    pub services: Services,
    pub console_dir: Option<PathBuf>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    let console = state.console_dir.clone();
    let mut r = Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::rest::routes())
        // Both: the tower layer bounds every body (the GraphQL extractor ignores axum's limit).
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .with_state(state);
    r = match console {
        Some(dir) => {
            let index = dir.join("index.html");
            r.fallback_service(
                tower_http::services::ServeDir::new(dir)
                    .fallback(tower_http::services::ServeFile::new(index)),
            )
        }
        None => r.route("/", get(|| async { Html(PLACEHOLDER) })),
    };
    r
}

/// Largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

const PLACEHOLDER: &str = include_str!("../../web/placeholder.html");

fn error_response(e: Error) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "errors": [{ "message": e.public_message(), "extensions": { "code": e.code() } }] });
    (status, Json(body)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn graphql(State(s): State<AppState>, headers: HeaderMap, req: GraphQLRequest) -> Response {
    let actor = match s.services.authenticate(bearer(&headers)).await {
        Ok(a) => a,
        Err(e) => {
            crate::metrics::METRICS.api_request("graphql", e.code());
            return error_response(e);
        }
    };
    let req = req.into_inner();
    let op = req
        .operation_name
        .clone()
        .unwrap_or_else(|| "anonymous".to_owned());
    let resp = s.schema.execute(req.data(actor)).await;
    let outcome = resp
        .errors
        .first()
        .and_then(|e| {
            e.extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .map(|c| c.to_string().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| {
            if resp.errors.is_empty() {
                "ok".to_owned()
            } else {
                "error".to_owned()
            }
        });
    crate::metrics::METRICS.api_request(&format!("graphql:{op}"), &outcome);
    GraphQLResponse::from(resp).into_response()
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .finish(),
    )
}

async fn ws(
    State(s): State<AppState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let schema = s.schema.clone();
    let services = s.services.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let auth = payload
                        .get("authorization")
                        .or_else(|| payload.get("Authorization"))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned);
                    let actor = services
                        .authenticate(auth.as_deref())
                        .await
                        .map_err(crate::graphql::gql_error)?;
                    let mut data = Data::default();
                    data.insert(actor);
                    Ok(data)
                })
                .serve()
        })
        .into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    let db = &s.services.db;
    let ping = db.execute_unprepared("SELECT 1").await.is_ok();
    if ping && crate::db::is_migrated(db).await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable or not migrated",
        )
            .into_response()
    }
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = s.services.authenticate(bearer(&headers)).await {
        return error_response(e);
    }
    let rows: Vec<(String, entity::task::TaskState, i64)> = match entity::task::Entity::find()
        .select_only()
        .column(entity::task::Column::Kind)
        .column(entity::task::Column::State)
        .column_as(entity::task::Column::Id.count(), "n")
        .group_by(entity::task::Column::Kind)
        .group_by(entity::task::Column::State)
        .into_tuple()
        .all(&s.services.db)
        .await
    {
        Ok(r) => r,
        Err(e) => return error_response(e.into()),
    };
    let instances = entity::instance::Entity::find()
        .count(&s.services.db)
        .await
        .unwrap_or(0);
    let mut out = String::from(
        "# HELP snapgres_tasks Tasks by kind and state.\n# TYPE snapgres_tasks gauge\n",
    );
    for (kind, state, n) in rows {
        let state = serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!(
            "snapgres_tasks{{kind=\"{kind}\",state=\"{state}\"}} {n}\n"
        ));
    }
    out.push_str(&format!("# HELP snapgres_instances_total Instance rows.\n# TYPE snapgres_instances_total gauge\nsnapgres_instances_total {instances}\n"));
    crate::metrics::METRICS.render(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

use sea_orm::ColumnTrait as _;
