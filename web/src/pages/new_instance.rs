//! Create a fresh instance.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use serde_json::{json, Value};

use crate::api::{self, ApiError};
use crate::components::{field_error, ErrorBanner};

#[component]
pub fn NewInstance() -> impl IntoView {
    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let dns = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let navigate = use_navigate();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let navigate = navigate.clone();
        let mut input =
            json!({ "name": name.get_untracked(), "password": password.get_untracked() });
        if !dns.get_untracked().is_empty() {
            input["dnsLabel"] = json!(dns.get_untracked());
        }
        spawn_local(async move {
            match api::gql::<Value>(
                "mutation($i: CreateInstanceInput!) { createInstance(input: $i) { task { id } } }",
                json!({ "i": input }),
            )
            .await
            {
                Ok(v) => navigate(
                    &format!(
                        "/tasks/{}",
                        v["createInstance"]["task"]["id"]
                            .as_str()
                            .unwrap_or_default()
                    ),
                    Default::default(),
                ),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let fe = move |f: &'static str| {
        move || {
            field_error(error.get(), f)
                .map(|m| view! { <span class="field-error" role="alert">{m}</span> })
        }
    };
    view! {
        <h1>"New instance"</h1>
        <form on:submit=submit>
            <label>"Name" <input id="new-name" required prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />{fe("name")}</label>
            <label>"Superuser password (8–128 characters)" <input id="new-password" type="password" required prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev)) />{fe("password")}</label>
            <label>"DNS label (optional)" <input id="new-dns" prop:value=move || dns.get() on:input=move |ev| dns.set(event_target_value(&ev)) />{fe("dnsLabel")}</label>
            <button type="submit">"Create"</button>
        </form>
        {move || error.get().filter(|e| !matches!(e.field.as_deref(), Some("name" | "password" | "dnsLabel"))).map(|e| view! { <ErrorBanner error=e /> })}
    }
}
