//! Sign in with an API token (kept for this browser session only).

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use serde_json::{json, Value};

use crate::api;
use crate::components::ErrorBanner;

#[component]
pub fn SignIn() -> impl IntoView {
    let token = RwSignal::new(String::new());
    let error = RwSignal::new(None::<api::ApiError>);
    let navigate = use_navigate();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let t = token.get_untracked().trim().to_owned();
        let navigate = navigate.clone();
        api::set_token(&t);
        spawn_local(async move {
            match api::gql::<Value>("{ instances(first: 1) { nodes { id } } }", json!({})).await {
                Ok(_) => {
                    error.set(None);
                    navigate("/", Default::default());
                }
                Err(e) => {
                    api::clear_token();
                    error.set(Some(e));
                }
            }
        });
    };
    view! {
        <h1>"Sign in"</h1>
        <form on:submit=submit>
            <label>
                "API token"
                <input id="token" type="password" autocomplete="off" required
                    prop:value=move || token.get()
                    on:input=move |ev| token.set(event_target_value(&ev)) />
            </label>
            <button type="submit">"Sign in"</button>
            <p class="note">"The token is kept for this browser tab only."</p>
        </form>
        {move || error.get().map(|e| view! { <ErrorBanner error=e /> })}
    }
}
