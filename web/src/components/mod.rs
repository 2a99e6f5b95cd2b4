//! Small shared pieces: state badges, load states, error banners.

use leptos::prelude::*;

use crate::api::ApiError;

/// A state as a coloured badge (`RUNNING` → "running").
#[component]
pub fn Badge(#[prop(into)] state: Signal<String>) -> impl IntoView {
    view! { <span class=move || format!("badge {}", state.get().to_lowercase())>{move || state.get().to_lowercase()}</span> }
}

/// Something loading from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Load<T> {
    Loading,
    Ready(T),
    Failed(ApiError),
}

/// The error banner; an expired or missing token links to sign-in.
#[component]
pub fn ErrorBanner(error: ApiError) -> impl IntoView {
    let signin = matches!(error.code.as_str(), "UNAUTHENTICATED" | "FORBIDDEN");
    view! {
        <p class="error" role="alert">
            {error.message.clone()}
            {signin.then(|| view! { " " <a href="/signin">"Sign in with a token"</a> })}
        </p>
    }
}

/// The error for `field`, shown next to that field.
pub fn field_error(err: Option<ApiError>, field: &str) -> Option<String> {
    err.filter(|e| e.field.as_deref() == Some(field))
        .map(|e| e.message)
}
