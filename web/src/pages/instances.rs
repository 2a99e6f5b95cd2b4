//! Instances: state, where to connect (never a password), and "Create image".

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;
use serde::Deserialize;
use serde_json::json;

use crate::api::types::{Instance, Nodes};
use crate::api::{self, ApiError};
use crate::components::{field_error, Badge, ErrorBanner, Load};

#[derive(Deserialize)]
struct Data {
    instances: Nodes<Instance>,
}

const QUERY: &str = "{ instances(first: 100) { nodes { id name state postgresVersion imageType createdAt connection { host port user database uri } } } }";

/// Loads the list now and every few seconds while the page is open.
pub fn poll<T: Clone + Send + Sync + 'static>(
    state: RwSignal<Load<T>>,
    load: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ApiError>>>>
        + Clone
        + 'static,
) {
    let run = move || {
        let load = load.clone();
        spawn_local(async move {
            let r = load().await;
            state.set(match r {
                Ok(v) => Load::Ready(v),
                Err(e) => Load::Failed(e),
            });
        });
    };
    run();
    if let Ok(handle) = set_interval_with_handle(run, Duration::from_secs(3)) {
        on_cleanup(move || handle.clear());
    }
}

#[component]
pub fn Instances() -> impl IntoView {
    let state = RwSignal::new(Load::<Vec<Instance>>::Loading);
    poll(state, || {
        Box::pin(async {
            api::gql::<Data>(QUERY, json!({}))
                .await
                .map(|d| d.instances.nodes)
        })
    });
    view! {
        <h1>"Instances"</h1>
        <p><A href="/instances/new" attr:class="button">"New instance"</A></p>
        {move || match state.get() {
            Load::Loading => view! { <p>"Loading instances…"</p> }.into_any(),
            Load::Failed(e) => view! { <ErrorBanner error=e /> }.into_any(),
            Load::Ready(list) if list.is_empty() => view! { <p class="note">"No instances yet."</p> }.into_any(),
            Load::Ready(list) => view! {
                <table>
                    <thead><tr><th>"Name"</th><th>"State"</th><th>"Connect"</th><th>"Version"</th><th>"Image"</th></tr></thead>
                    <tbody>
                        {list.into_iter().map(|i| view! { <InstanceRow instance=i /> }).collect_view()}
                    </tbody>
                </table>
            }.into_any(),
        }}
    }
}

#[component]
fn InstanceRow(instance: Instance) -> impl IntoView {
    let image_name = RwSignal::new(format!("{}-{}", instance.name, "image"));
    let error = RwSignal::new(None::<ApiError>);
    let navigate = use_navigate();
    let id = instance.id.clone();
    let running = instance.state == "RUNNING";
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (id, name, navigate) = (id.clone(), image_name.get_untracked(), navigate.clone());
        spawn_local(async move {
            let r = api::gql::<serde_json::Value>(
                "mutation($i: CreateImageInput!) { createImage(input: $i) { task { id } } }",
                json!({ "i": { "name": name, "instanceId": id } }),
            )
            .await;
            match r {
                Ok(v) => navigate(
                    &format!(
                        "/tasks/{}",
                        v["createImage"]["task"]["id"].as_str().unwrap_or_default()
                    ),
                    Default::default(),
                ),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let conn = instance.connection.clone();
    let state = instance.state.clone();
    view! {
        <tr data-instance=instance.name.clone()>
            <td>{instance.name.clone()}</td>
            <td><Badge state=state /></td>
            <td>
                {conn.map(|c| {
                    let uri = c.uri.clone();
                    view! {
                        <code>{format!("{}:{} user {} db {}", c.host, c.port, c.user, c.database)}</code>
                        " "
                        <button class="secondary" type="button" aria-label="Copy connection string"
                            on:click=move |_| {
                                if let Some(w) = web_sys::window() {
                                    let _ = w.navigator().clipboard().write_text(&uri);
                                }
                            }>"Copy"</button>
                    }
                })}
            </td>
            <td>{instance.postgres_version.clone()}</td>
            <td>
                {running.then(|| view! {
                    <form class="inline" on:submit=create.clone()>
                        <label>"Image name"
                            <input name="image-name" prop:value=move || image_name.get() on:input=move |ev| image_name.set(event_target_value(&ev)) />
                            {move || field_error(error.get(), "name").map(|m| view! { <span class="field-error">{m}</span> })}
                        </label>
                        <button type="submit">"Create image"</button>
                    </form>
                })}
                {move || error.get().filter(|e| e.field.is_none()).map(|e| view! { <ErrorBanner error=e /> })}
            </td>
        </tr>
    }
}
