//! Component tests in headless Chromium (wasm-bindgen-test).

use snapgres_web::api::parse_response;
use snapgres_web::api::types::{bytes, eta_seconds, Task};
use snapgres_web::pages::task::apply_event;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn errors_keep_code_and_field() {
    let body = serde_json::json!({ "data": null, "errors": [{ "message": "an instance named x already exists", "extensions": { "code": "CONFLICT", "field": "name" } }] });
    let e = parse_response::<serde_json::Value>(body).unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.field.as_deref()),
        ("CONFLICT", Some("name"))
    );
}

#[wasm_bindgen_test]
fn progress_events_update_the_timeline() {
    let mut t: Task = serde_json::from_value(serde_json::json!({ "id": "t", "kind": "create_instance", "state": "RUNNING", "error": null, "createdAt": "2026-11-25T00:00:00Z",
        "steps": [{ "position": 0, "name": "fetch_image", "state": "PENDING", "attempt": 0, "startedAt": null, "done": null, "total": null, "unit": null, "message": null, "error": null }] })).unwrap();
    let ev = serde_json::json!({ "taskProgress": { "task": { "state": "RUNNING", "error": null },
        "step": { "position": 0, "name": "fetch_image", "state": "SUCCEEDED", "attempt": 1, "startedAt": null, "done": null, "total": null, "unit": null, "message": null, "error": null }, "log": null } });
    apply_event(&mut t, &ev);
    assert_eq!(t.steps[0].state, "SUCCEEDED");
    let ev = serde_json::json!({ "taskProgress": { "task": { "state": "SUCCEEDED", "error": null }, "step": null, "log": { "at": "2026-11-25T00:00:01Z", "level": "info", "message": "done" } } });
    apply_event(&mut t, &ev);
    assert_eq!((t.state.as_str(), t.logs.len()), ("SUCCEEDED", 1));
    // The same line again (a subscription's opening snapshot) is not shown twice.
    apply_event(&mut t, &ev);
    assert_eq!(t.logs.len(), 1);
}

#[wasm_bindgen_test]
fn bytes_and_eta() {
    assert_eq!(bytes(862_000_000.0), "862.0 MB");
    assert_eq!(eta_seconds(50.0, 100.0, 10.0), Some(10.0));
    assert_eq!(eta_seconds(0.0, 100.0, 10.0), None);
}
