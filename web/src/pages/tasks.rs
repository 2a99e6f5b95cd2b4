//! Tasks, kept live by the `taskUpdates` subscription.

use futures::StreamExt;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use serde::Deserialize;
use serde_json::json;

use crate::api;
use crate::api::types::{Nodes, Task};
use crate::components::{Badge, ErrorBanner, Load};

#[derive(Deserialize)]
struct Data {
    tasks: Nodes<Task>,
}

#[component]
pub fn Tasks() -> impl IntoView {
    let state = RwSignal::new(Load::<Vec<Task>>::Loading);
    let alive = RwSignal::new(true);
    on_cleanup(move || alive.set(false));
    spawn_local(async move {
        loop {
            match api::gql::<Data>(
                "{ tasks(first: 50) { nodes { id kind state error createdAt } } }",
                json!({}),
            )
            .await
            {
                Ok(d) => state.set(Load::Ready(d.tasks.nodes)),
                Err(e) => state.set(Load::Failed(e)),
            }
            let mut events = Box::pin(api::subscribe(
                "subscription { taskUpdates { task { id kind state error createdAt } } }",
                json!({}),
            ));
            while let Some(ev) = events.next().await {
                if !alive.get_untracked() {
                    return;
                }
                let Ok(v) = ev else { break };
                let Ok(t) = serde_json::from_value::<Task>(v["taskUpdates"]["task"].clone()) else {
                    continue;
                };
                state.update(|s| {
                    if let Load::Ready(list) = s {
                        match list.iter_mut().find(|x| x.id == t.id) {
                            Some(x) => x.state = t.state.clone(),
                            None => list.insert(0, t.clone()),
                        }
                    }
                });
            }
            if !alive.get_untracked() {
                return;
            }
            // The connection dropped (a server restart): reload and resubscribe.
            gloo_timers::future::TimeoutFuture::new(1_000).await;
        }
    });
    view! {
        <h1>"Tasks"</h1>
        {move || match state.get() {
            Load::Loading => view! { <p>"Loading tasks…"</p> }.into_any(),
            Load::Failed(e) => view! { <ErrorBanner error=e /> }.into_any(),
            Load::Ready(list) if list.is_empty() => view! { <p class="note">"No tasks yet."</p> }.into_any(),
            Load::Ready(list) => view! {
                <table>
                    <thead><tr><th>"Task"</th><th>"State"</th><th>"Started"</th></tr></thead>
                    <tbody>
                        {list.into_iter().map(|t| view! {
                            <tr>
                                <td><A href=format!("/tasks/{}", t.id)>{t.kind.replace('_', " ")}</A></td>
                                <td><Badge state=t.state.clone() /></td>
                                <td>{t.created_at.chars().take(19).collect::<String>().replace('T', " ")}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any(),
        }}
    }
}
