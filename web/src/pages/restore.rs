//! Restore an image as a new instance.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};
use serde_json::{json, Value};

use crate::api::{self, ApiError};
use crate::components::{field_error, ErrorBanner};

#[component]
pub fn Restore() -> impl IntoView {
    let params = use_params_map();
    let image_id = move || params.read().get("id").unwrap_or_default();
    let name = RwSignal::new(String::new());
    let dns = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let navigate = navigate.clone();
        let mut input = json!({ "name": name.get_untracked(), "sourceImageId": image_id() });
        if !dns.get_untracked().is_empty() {
            input["dnsLabel"] = json!(dns.get_untracked());
        }
        busy.set(true);
        spawn_local(async move {
            let r = api::gql::<Value>(
                "mutation($i: CreateInstanceInput!) { createInstance(input: $i) { task { id } } }",
                json!({ "i": input }),
            )
            .await;
            busy.set(false);
            match r {
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
    view! {
        <h1>"Restore to a new instance"</h1>
        <form on:submit=submit>
            <p class="note">"The restored instance keeps the source image's password: connect with the password of the instance the image was taken from."</p>
            <label>"Instance name"
                <input id="restore-name" required prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                {move || field_error(error.get(), "name").map(|m| view! { <span class="field-error" role="alert">{m}</span> })}
            </label>
            <label>"DNS label (optional, defaults to the name)"
                <input id="restore-dns" prop:value=move || dns.get() on:input=move |ev| dns.set(event_target_value(&ev)) />
                {move || field_error(error.get(), "dnsLabel").map(|m| view! { <span class="field-error" role="alert">{m}</span> })}
            </label>
            <button type="submit" prop:disabled=move || busy.get()>"Restore"</button>
        </form>
        {move || error.get().filter(|e| !matches!(e.field.as_deref(), Some("name" | "dnsLabel"))).map(|e| view! { <ErrorBanner error=e /> })}
    }
}
