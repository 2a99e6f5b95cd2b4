//! One task, live: the step timeline (`taskProgress`), byte progress with time left, the log
//! tail, and Cancel. Reconnects if the connection drops before the task ends.

use futures::StreamExt;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::types::{bytes, eta_seconds, LogLine, Step, Task};
use crate::api::{self, ApiError};
use crate::components::{Badge, ErrorBanner, Load};

#[derive(Deserialize)]
struct Data {
    task: Option<Task>,
}

const QUERY: &str = "query($id: UUID!) { task(id: $id) { id kind state error createdAt steps { position name state attempt startedAt done total unit message error } logs(last: 200) { at level message } } }";
const SUBSCRIPTION: &str = "subscription($id: UUID!) { taskProgress(taskId: $id) { task { state error } step { position name state attempt startedAt done total unit message error } log { at level message } } }";

fn terminal(state: &str) -> bool {
    matches!(state, "SUCCEEDED" | "FAILED" | "CANCELLED")
}

/// Applies one `taskProgress` event to the task shown.
pub fn apply_event(task: &mut Task, ev: &Value) {
    let p = &ev["taskProgress"];
    if let Some(s) = p["task"]["state"].as_str() {
        task.state = s.to_owned();
    }
    if let Some(e) = p["task"]["error"].as_str() {
        task.error = Some(e.to_owned());
    }
    if let Ok(step) = serde_json::from_value::<Step>(p["step"].clone()) {
        match task.steps.iter_mut().find(|s| s.position == step.position) {
            Some(s) => *s = step,
            None => {
                task.steps.push(step);
                task.steps.sort_by_key(|s| s.position);
            }
        }
    }
    if let Ok(line) = serde_json::from_value::<LogLine>(p["log"].clone()) {
        // The subscription starts with the recent lines; skip the ones already shown.
        if task
            .logs
            .iter()
            .any(|l| l.at == line.at && l.message == line.message)
        {
            return;
        }
        task.logs.push(line);
        if task.logs.len() > 200 {
            task.logs.remove(0);
        }
    }
}

#[component]
pub fn TaskPage() -> impl IntoView {
    let params = use_params_map();
    let id = params.read_untracked().get("id").unwrap_or_default();
    let state = RwSignal::new(Load::<Task>::Loading);
    let alive = RwSignal::new(true);
    on_cleanup(move || alive.set(false));
    let cancel_error = RwSignal::new(None::<ApiError>);
    {
        let id = id.clone();
        spawn_local(async move {
            loop {
                match api::gql::<Data>(QUERY, json!({ "id": id })).await {
                    Ok(Data { task: Some(t) }) => state.set(Load::Ready(t)),
                    Ok(Data { task: None }) => {
                        state.set(Load::Failed(ApiError {
                            code: "NOT_FOUND".into(),
                            message: "No such task.".into(),
                            field: None,
                        }));
                        return;
                    }
                    Err(e) => state.set(Load::Failed(e)),
                }
                if matches!(state.get_untracked(), Load::Ready(ref t) if terminal(&t.state)) {
                    return;
                }
                let mut events = Box::pin(api::subscribe(SUBSCRIPTION, json!({ "id": id })));
                while let Some(ev) = events.next().await {
                    if !alive.get_untracked() {
                        return;
                    }
                    let Ok(v) = ev else { break };
                    state.update(|s| {
                        if let Load::Ready(t) = s {
                            apply_event(t, &v);
                        }
                    });
                }
                if !alive.get_untracked()
                    || matches!(state.get_untracked(), Load::Ready(ref t) if terminal(&t.state))
                {
                    return;
                }
                gloo_timers::future::TimeoutFuture::new(1_000).await;
            }
        });
    }
    let cancel = move |_| {
        let id = id.clone();
        spawn_local(async move {
            if let Err(e) = api::gql::<Value>(
                "mutation($id: UUID!) { cancelTask(id: $id) { state } }",
                json!({ "id": id }),
            )
            .await
            {
                cancel_error.set(Some(e));
            }
        });
    };
    view! {
        {move || match state.get() {
            Load::Loading => view! { <p>"Loading task…"</p> }.into_any(),
            Load::Failed(e) => view! { <ErrorBanner error=e /> }.into_any(),
            Load::Ready(t) => {
                let done = t.steps.iter().filter(|s| matches!(s.state.as_str(), "SUCCEEDED" | "SKIPPED")).count();
                let total = t.steps.len();
                view! {
                    <h1>{t.kind.replace('_', " ")} " " <Badge state=t.state.clone() /></h1>
                    <p id="task-state" data-state=t.state.clone()>{format!("{done} of {total} steps done")}</p>
                    {t.error.clone().map(|e| view! { <p class="error" role="alert">{e}</p> })}
                    <ol class="steps" aria-label="Steps">
                        {t.steps.iter().cloned().map(|s| view! { <StepRow step=s /> }).collect_view()}
                    </ol>
                    <h2>"Log"</h2>
                    <pre class="log" aria-live="polite">{t.logs.iter().map(|l| format!("{} {} {}\n", l.at.chars().skip(11).take(8).collect::<String>(), l.level, l.message)).collect::<String>()}</pre>
                    {(!terminal(&t.state)).then(|| view! { <button class="secondary" type="button" on:click=cancel.clone()>"Cancel"</button> })}
                }.into_any()
            }
        }}
        {move || cancel_error.get().map(|e| view! { <ErrorBanner error=e /> })}
    }
}

#[component]
fn StepRow(step: Step) -> impl IntoView {
    let class = step.state.to_lowercase();
    let bar = match (step.unit.as_deref(), step.done, step.total) {
        (Some("bytes"), Some(d), Some(t)) if t > 0.0 => {
            let elapsed = step
                .started_at
                .as_deref()
                .and_then(|s| {
                    js_sys::Date::parse(s)
                        .is_finite()
                        .then(|| (js_sys::Date::now() - js_sys::Date::parse(s)) / 1000.0)
                })
                .unwrap_or(0.0);
            let eta = if step.state == "RUNNING" {
                eta_seconds(d, t, elapsed).map(|s| format!(", about {:.0} s left", s.ceil()))
            } else {
                None
            };
            Some(view! {
                <progress max=t value=d aria-label=format!("{} progress", step.name)></progress>
                <span>{format!("{} of {}{}", bytes(d), bytes(t), eta.unwrap_or_default())}</span>
            })
        }
        _ => None,
    };
    view! {
        <li class=class data-step=step.name.clone()>
            <strong>{step.name.replace('_', " ")}</strong> " " <Badge state=step.state.clone() />
            {(step.attempt > 1).then(|| format!(" (attempt {})", step.attempt))}
            {bar}
            {step.message.clone().map(|m| view! { <div class="note">{m}</div> })}
            {step.error.clone().map(|e| view! { <div class="field-error">{e}</div> })}
        </li>
    }
}
