//! Every network call of the console: GraphQL over HTTP and graphql-transport-ws subscriptions,
//! with the bearer token kept for the browser session only (sessionStorage).

use futures::{SinkExt, Stream, StreamExt};
use gloo_net::http::Request;
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::Message;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

pub mod types;

const TOKEN_KEY: &str = "snapgres-token";

fn session() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// The token of this browser session.
pub fn token() -> Option<String> {
    session()?.get_item(TOKEN_KEY).ok()?
}

/// Keeps the token for this browser session.
pub fn set_token(t: &str) {
    if let Some(s) = session() {
        let _ = s.set_item(TOKEN_KEY, t);
    }
}

/// Forgets the token.
pub fn clear_token() {
    if let Some(s) = session() {
        let _ = s.remove_item(TOKEN_KEY);
    }
}

/// An error a page can show: the server's code and the input field it names.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ApiError {
    fn network(e: impl std::fmt::Display) -> Self {
        Self {
            code: "NETWORK".into(),
            message: format!("cannot reach the server: {e}"),
            field: None,
        }
    }
}

#[derive(Deserialize)]
struct GqlResponse<T> {
    data: Option<T>,
    #[serde(default)]
    errors: Vec<GqlError>,
}

#[derive(Deserialize)]
struct GqlError {
    message: String,
    #[serde(default)]
    extensions: Option<Value>,
}

/// Parses a GraphQL response body into data or the first error.
pub fn parse_response<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    let r: GqlResponse<T> = serde_json::from_value(body).map_err(|e| ApiError {
        code: "INTERNAL".into(),
        message: format!("unexpected response: {e}"),
        field: None,
    })?;
    if let Some(e) = r.errors.into_iter().next() {
        let ext = e.extensions.unwrap_or(Value::Null);
        return Err(ApiError {
            code: ext
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("INTERNAL")
                .to_owned(),
            message: e.message,
            field: ext.get("field").and_then(Value::as_str).map(str::to_owned),
        });
    }
    r.data.ok_or_else(|| ApiError {
        code: "INTERNAL".into(),
        message: "no data in response".into(),
        field: None,
    })
}

/// Runs a query or mutation.
pub async fn gql<T: DeserializeOwned>(query: &str, variables: Value) -> Result<T, ApiError> {
    let mut req = Request::post("/graphql").header("content-type", "application/json");
    if let Some(t) = token() {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    let resp = req
        .json(&json!({ "query": query, "variables": variables }))
        .map_err(ApiError::network)?
        .send()
        .await
        .map_err(ApiError::network)?;
    let body: Value = resp.json().await.map_err(ApiError::network)?;
    parse_response(body)
}

fn ws_url() -> String {
    let loc = web_sys::window().map(|w| w.location());
    let host = loc.as_ref().and_then(|l| l.host().ok()).unwrap_or_default();
    let secure = loc
        .and_then(|l| l.protocol().ok())
        .is_some_and(|p| p == "https:");
    format!("{}://{host}/graphql/ws", if secure { "wss" } else { "ws" })
}

/// Subscribes; yields each `data` payload until the server completes the subscription or the
/// connection drops (the caller reconnects).
pub fn subscribe(
    query: &'static str,
    variables: Value,
) -> impl Stream<Item = Result<Value, ApiError>> {
    futures::stream::once(async move {
        let ws = WebSocket::open_with_protocol(&ws_url(), "graphql-transport-ws").map_err(ApiError::network)?;
        let (mut tx, rx) = ws.split();
        let auth = token().map(|t| format!("Bearer {t}")).unwrap_or_default();
        tx.send(Message::Text(json!({ "type": "connection_init", "payload": { "authorization": auth } }).to_string())).await.map_err(ApiError::network)?;
        tx.send(Message::Text(json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }).to_string())).await.map_err(ApiError::network)?;
        Ok::<_, ApiError>((tx, rx))
    })
    .flat_map(|opened| match opened {
        Err(e) => futures::stream::iter(vec![Err(e)]).boxed_local(),
        Ok((tx, rx)) => rx
            .map(move |m| {
                let _keep_sender_open = &tx;
                m
            })
            .take_while(|m| futures::future::ready(m.is_ok()))
            .filter_map(|m| async move {
                let Ok(Message::Text(text)) = m else { return None };
                let v: Value = serde_json::from_str(&text).ok()?;
                match v.get("type").and_then(Value::as_str) {
                    Some("next") => Some(parse_response::<Value>(v["payload"].clone())),
                    Some("error") => Some(Err(ApiError { code: "SUBSCRIPTION".into(), message: v["payload"].to_string(), field: None })),
                    Some("complete") => Some(Err(ApiError { code: "COMPLETE".into(), message: "done".into(), field: None })),
                    _ => None,
                }
            })
            .take_while(|r| futures::future::ready(!matches!(r, Err(e) if e.code == "COMPLETE")))
            .boxed_local(),
    })
}
