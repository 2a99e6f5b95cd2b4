//! Images: state, size, short checksum, source, age, and "Restore to new instance".

use leptos::prelude::*;
use leptos_router::components::A;
use serde::Deserialize;
use serde_json::json;

use super::instances::poll;
use crate::api;
use crate::api::types::{bytes, Image, Nodes};
use crate::components::{Badge, ErrorBanner, Load};

#[derive(Deserialize)]
struct Data {
    images: Nodes<Image>,
}

const QUERY: &str = "{ images(first: 100) { nodes { id name state sizeBytes checksum sourceInstanceName databases createdAt } } }";

#[component]
pub fn Images() -> impl IntoView {
    let state = RwSignal::new(Load::<Vec<Image>>::Loading);
    poll(state, || {
        Box::pin(async {
            api::gql::<Data>(QUERY, json!({}))
                .await
                .map(|d| d.images.nodes)
        })
    });
    view! {
        <h1>"Images"</h1>
        {move || match state.get() {
            Load::Loading => view! { <p>"Loading images…"</p> }.into_any(),
            Load::Failed(e) => view! { <ErrorBanner error=e /> }.into_any(),
            Load::Ready(list) if list.is_empty() => view! { <p class="note">"No images yet. Take one from the Instances page."</p> }.into_any(),
            Load::Ready(list) => view! {
                <table>
                    <thead><tr><th>"Name"</th><th>"State"</th><th>"Restore"</th><th>"Size"</th><th>"Checksum"</th><th>"Source"</th><th>"Created"</th></tr></thead>
                    <tbody>
                        {list.into_iter().map(|i| {
                            let ready = i.state == "READY";
                            let href = format!("/images/{}/restore", i.id);
                            view! {
                                <tr data-image=i.name.clone()>
                                    <td>{i.name.clone()}</td>
                                    <td><Badge state=i.state.clone() /></td>
                                    <td>{ready.then(|| view! { <A href=href attr:class="button">"Restore to new instance"</A> })}</td>
                                    <td>{i.size_bytes.map(bytes)}</td>
                                    <td><code title=i.checksum.clone().unwrap_or_default()>{i.checksum.clone().map(|c| c.chars().take(12).collect::<String>())}</code></td>
                                    <td>{i.source_instance_name.clone()}</td>
                                    <td>{i.created_at.chars().take(19).collect::<String>().replace('T', " ")}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any(),
        }}
    }
}
