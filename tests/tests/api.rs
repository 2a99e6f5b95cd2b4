//! The API contract: every rule → its error code and field, over GraphQL and REST; concurrent
//! requests for one name → exactly one wins; the auth matrix (no token / viewer / operator /
//! admin) over GraphQL, the WebSocket, REST and /metrics; cancelTask cleans up.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sea_orm::sqlx;
use serde_json::{json, Value};
use snapgres_e2e::*;

const PW: &str = "api-test-password";

async fn wait_running(s: &Server, task: &str) {
    let t = s.wait_task(task, Duration::from_secs(120)).await.unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
}

fn token_cli(data: &std::path::Path, name: &str, role: &str) -> String {
    let out = std::process::Command::new(snapgres_bin())
        .args(["token", "--data-dir"])
        .arg(data)
        .args(["create", "--name", name, "--role", role])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .trim()
        .to_owned()
}

async fn rest(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut r = c.request(method.parse().unwrap(), format!("{}{path}", s.url));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const CREATE_INSTANCE: &str = "mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } warnings } }";
const CREATE_IMAGE: &str =
    "mutation($i: CreateImageInput!) { createImage(input: $i) { image { id } task { id } } }";

fn code_field(v: &Value) -> (String, String) {
    let e = &v["errors"][0];
    (
        e["extensions"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned(),
        e["extensions"]["field"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_has_its_code_and_field_over_graphql_and_rest() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]).await.unwrap();
    let tok = s.token.clone();
    let d = s
        .gql(
            CREATE_INSTANCE,
            json!({ "i": { "name": "src", "password": PW, "dnsLabel": "src-dns" } }),
        )
        .await
        .unwrap();
    let src = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_running(&s, d["createInstance"]["task"]["id"].as_str().unwrap()).await;
    let d = s
        .gql(
            CREATE_IMAGE,
            json!({ "i": { "name": "ready-img", "instanceId": src } }),
        )
        .await
        .unwrap();
    let ready = d["createImage"]["image"]["id"].as_str().unwrap().to_owned();
    wait_running(&s, d["createImage"]["task"]["id"].as_str().unwrap()).await;

    // A FAILED image: a backup held up by a lock, then cancelled (cancelTask runs cleanup).
    let port = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": src }),
        )
        .await
        .unwrap()["instance"]["connection"]["port"]
        .as_u64()
        .unwrap() as u16;
    let mut c = connect("127.0.0.1", port, "postgres", PW).await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (id int)")
        .execute(&mut c)
        .await
        .unwrap();
    let mut lock = connect("127.0.0.1", port, "postgres", PW).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let d = s
        .gql(
            CREATE_IMAGE,
            json!({ "i": { "name": "cancelled-img", "instanceId": src } }),
        )
        .await
        .unwrap();
    let failed = d["createImage"]["image"]["id"].as_str().unwrap().to_owned();
    let task = d["createImage"]["task"]["id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let t = s
            .gql(
                "query($id: UUID!) { task(id: $id) { steps { name state } } }",
                json!({ "id": task }),
            )
            .await
            .unwrap();
        if t["task"]["steps"][2]["state"] == "RUNNING" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = s
        .gql(
            "mutation($id: UUID!) { cancelTask(id: $id) { state } }",
            json!({ "id": task }),
        )
        .await
        .unwrap();
    assert_eq!(d["cancelTask"]["state"], "CANCELLING");
    let t = s.wait_task(&task, Duration::from_secs(30)).await.unwrap();
    assert_eq!(t["state"], "CANCELLED", "{t}");
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    let img = s
        .gql(
            "query($id: UUID!) { image(id: $id) { state error } }",
            json!({ "id": failed }),
        )
        .await
        .unwrap();
    assert_eq!(img["image"]["state"], "FAILED", "{img}");
    assert!(
        !data.join("images/images").join(&failed).exists(),
        "cancel cleaned up the partial image"
    );

    let unknown = uuid::Uuid::new_v4().to_string();
    let long55 = "a".repeat(55);
    let pw129 = "p".repeat(129);
    let desc1001 = "d".repeat(1001);
    // (mutation, input, code, field)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            CREATE_INSTANCE,
            json!({ "name": "Bad_Name", "password": PW }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "1abc", "password": PW }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "abc-", "password": PW }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": long55, "password": PW }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "password": PW, "dnsLabel": "-x" }),
            "BAD_USER_INPUT",
            "dnsLabel",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "password": "short" }),
            "BAD_USER_INPUT",
            "password",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "password": pw129 }),
            "BAD_USER_INPUT",
            "password",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name" }),
            "BAD_USER_INPUT",
            "password",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "password": PW, "storageSizeGb": 0 }),
            "BAD_USER_INPUT",
            "storageSizeGb",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "password": PW, "postgresVersion": "9.6" }),
            "BAD_USER_INPUT",
            "postgresVersion",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "sourceImageId": ready, "runtimeImageId": unknown }),
            "BAD_USER_INPUT",
            "runtimeImageId",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "sourceImageId": ready, "imageOverride": "postgres:15" }),
            "BAD_USER_INPUT",
            "imageOverride",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "sourceImageId": unknown }),
            "NOT_FOUND",
            "sourceImageId",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "ok-name", "sourceImageId": failed }),
            "BAD_USER_INPUT",
            "sourceImageId",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "src", "password": PW }),
            "CONFLICT",
            "name",
        ),
        (
            CREATE_INSTANCE,
            json!({ "name": "other", "password": PW, "dnsLabel": "src-dns" }),
            "CONFLICT",
            "dnsLabel",
        ),
        (
            CREATE_IMAGE,
            json!({ "name": "Bad Name", "instanceId": src }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            CREATE_IMAGE,
            json!({ "name": "_x", "instanceId": src }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            CREATE_IMAGE,
            json!({ "name": "ok", "instanceId": src, "description": desc1001 }),
            "BAD_USER_INPUT",
            "description",
        ),
        (
            CREATE_IMAGE,
            json!({ "name": "ok", "instanceId": unknown }),
            "NOT_FOUND",
            "instanceId",
        ),
        (
            CREATE_IMAGE,
            json!({ "name": "ready-img", "instanceId": src }),
            "CONFLICT",
            "name",
        ),
    ];
    let before = s
        .gql("{ tasks(first: 100) { nodes { id } } }", json!({}))
        .await
        .unwrap()["tasks"]["nodes"]
        .as_array()
        .unwrap()
        .len();
    for (m, input, code, field) in &cases {
        let (status, v) = s
            .gql_raw(m, json!({ "i": input }), Some(&tok))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            code_field(&v),
            (code.to_string(), field.to_string()),
            "GraphQL {input}: {v}"
        );
        assert!(!v["errors"][0]["message"].as_str().unwrap().is_empty());
        // The same over REST (snake_case bodies, HTTP status).
        let (path, body) = if *m == CREATE_INSTANCE {
            let mut b = serde_json::Map::new();
            for (k, v) in input.as_object().unwrap() {
                let k = match k.as_str() {
                    "dnsLabel" => "dns_label",
                    "storageSizeGb" => "storage_size_gb",
                    "postgresVersion" => "postgres_version",
                    "sourceImageId" => "source_image_id",
                    "runtimeImageId" => "runtime_image_id",
                    "imageOverride" => "image_override",
                    other => other,
                };
                b.insert(k.to_owned(), v.clone());
            }
            ("/api/instances", Value::Object(b))
        } else {
            (
                "/api/images",
                json!({ "name": input["name"], "instance_id": input["instanceId"], "description": input.get("description") }),
            )
        };
        let (status, v) = rest(&s, "POST", path, Some(body.clone()), Some(&tok)).await;
        let want = match *code {
            "BAD_USER_INPUT" => 400,
            "NOT_FOUND" => 404,
            _ => 409,
        };
        let rest_field: String = field
            .chars()
            .flat_map(|c| {
                if c.is_ascii_uppercase() {
                    vec!['_', c.to_ascii_lowercase()]
                } else {
                    vec![c]
                }
            })
            .collect();
        assert_eq!(status, want, "REST {body}: {v}");
        assert_eq!(v["error"]["code"], *code, "REST {body}: {v}");
        assert_eq!(v["error"]["field"], rest_field.as_str(), "REST {body}: {v}");
    }
    // Nothing was started by any refused request.
    let after = s
        .gql("{ tasks(first: 100) { nodes { id } } }", json!({}))
        .await
        .unwrap()["tasks"]["nodes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);

    // An instance that is not running cannot be imaged.
    let d = s
        .gql(
            CREATE_INSTANCE,
            json!({ "i": { "name": "young", "password": PW } }),
        )
        .await
        .unwrap();
    let young = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, v) = s
        .gql_raw(
            CREATE_IMAGE,
            json!({ "i": { "name": "too-early", "instanceId": young } }),
            Some(&tok),
        )
        .await
        .unwrap();
    assert_eq!(
        code_field(&v),
        ("BAD_USER_INPUT".into(), "instanceId".into()),
        "{v}"
    );
    wait_running(&s, d["createInstance"]["task"]["id"].as_str().unwrap()).await;

    // Unknown ids for delete and cancel; cancelling a finished task.
    for m in [
        "mutation($id: UUID!) { deleteImage(id: $id) { id } }",
        "mutation($id: UUID!) { deleteInstance(id: $id) { id } }",
        "mutation($id: UUID!) { cancelTask(id: $id) { id } }",
    ] {
        let (_, v) = s
            .gql_raw(m, json!({ "id": unknown }), Some(&tok))
            .await
            .unwrap();
        assert_eq!(code_field(&v).0, "NOT_FOUND", "{m}: {v}");
    }
    let (_, v) = s
        .gql_raw(
            "mutation($id: UUID!) { cancelTask(id: $id) { id } }",
            json!({ "id": task }),
            Some(&tok),
        )
        .await
        .unwrap();
    assert_eq!(code_field(&v).0, "CONFLICT", "{v}");
    let (status, _) = rest(
        &s,
        "DELETE",
        &format!("/api/images/{unknown}"),
        None,
        Some(&tok),
    )
    .await;
    assert_eq!(status, 404);
    let (status, v) = rest(
        &s,
        "POST",
        "/api/images",
        Some(json!({ "name": "x", "instance_id": src, "bogus": 1 })),
        Some(&tok),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("BAD_USER_INPUT")),
        "{v}"
    );

    // Concurrent requests for one name: exactly one wins.
    let reqs = (0..4).map(|_| {
        s.gql_raw(
            CREATE_IMAGE,
            json!({ "i": { "name": "race", "instanceId": src } }),
            Some(&tok),
        )
    });
    let results = futures::future::join_all(reqs).await;
    let wins = results
        .iter()
        .filter(|r| r.as_ref().unwrap().1.get("errors").is_none())
        .count();
    let conflicts = results
        .iter()
        .filter(|r| code_field(&r.as_ref().unwrap().1).0 == "CONFLICT")
        .count();
    assert_eq!((wins, conflicts), (1, 3), "{results:?}");
    let reqs = (0..4).map(|_| {
        s.gql_raw(
            CREATE_INSTANCE,
            json!({ "i": { "name": "race-inst", "password": PW } }),
            Some(&tok),
        )
    });
    let results = futures::future::join_all(reqs).await;
    let wins = results
        .iter()
        .filter(|r| r.as_ref().unwrap().1.get("errors").is_none())
        .count();
    assert_eq!(wins, 1, "{results:?}");

    // REST happy path with the seed's bodies.
    let (status, v) = rest(
        &s,
        "POST",
        "/api/images",
        Some(json!({ "name": "rest-img", "instance_id": src, "description": "via REST" })),
        Some(&tok),
    )
    .await;
    assert_eq!(status, 202, "{v}\n{}", s.log_text());
    let t = s
        .wait_task(v["task"]["id"].as_str().unwrap(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED");
    let rest_img = v["image"]["id"].as_str().unwrap().to_owned();
    let (status, v) = rest(&s, "POST", "/api/instances", Some(json!({ "name": "rest-copy", "password": "ignored-uses-source", "source_image_id": rest_img, "dns_label": "rest-copy" })), Some(&tok)).await;
    assert_eq!(status, 202, "{v}");
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .contains("password ignored"));
    assert!(!v.to_string().contains("ignored-uses-source"));
    let t = s
        .wait_task(v["task"]["id"].as_str().unwrap(), Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let (status, inst) = rest(
        &s,
        "GET",
        &format!("/api/instances/{}", v["instance"]["id"].as_str().unwrap()),
        None,
        Some(&tok),
    )
    .await;
    assert_eq!(
        (status, inst["state"].as_str()),
        (200, Some("running")),
        "{inst}"
    );
    let (status, list) = rest(&s, "GET", "/api/images?limit=2", None, Some(&tok)).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let next = list["next_cursor"].as_str().unwrap();
    let (_, list2) = rest(
        &s,
        "GET",
        &format!("/api/images?limit=2&after={next}"),
        None,
        Some(&tok),
    )
    .await;
    assert!(!list2["items"].as_array().unwrap().is_empty());
    assert_ne!(list["items"][0]["id"], list2["items"][0]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]).await.unwrap();
    let viewer = token_cli(&data, "ci-viewer", "viewer");
    let operator = token_cli(&data, "ci-operator", "operator");
    let admin = s.token.clone();
    let revoked = token_cli(&data, "gone", "operator");
    let out = std::process::Command::new(snapgres_bin())
        .args(["token", "--data-dir"])
        .arg(&data)
        .args(["revoke", "gone"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list = std::process::Command::new(snapgres_bin())
        .args(["token", "--data-dir"])
        .arg(&data)
        .arg("list")
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.contains("ci-viewer") && list.contains("revoked") && !list.contains(&viewer),
        "{list}"
    );

    // (token, may read, may write)
    let who: Vec<(Option<&str>, &str, bool, bool)> = vec![
        (None, "none", false, false),
        (Some("not-a-token"), "bogus", false, false),
        (Some(&revoked), "revoked", false, false),
        (Some(&viewer), "viewer", true, false),
        (Some(&operator), "operator", true, true),
        (Some(&admin), "admin", true, true),
    ];
    let unknown = uuid::Uuid::new_v4();
    for (tok, label, read, write) in who {
        let (status, v) = s
            .gql_raw(
                "{ instances { nodes { id } } images { nodes { id } } tasks { nodes { id } } }",
                json!({}),
                tok,
            )
            .await
            .unwrap();
        if read {
            assert!(v.get("errors").is_none(), "{label} reads: {v}");
        } else {
            assert_eq!(
                (status, code_field(&v).0.as_str()),
                (401, "UNAUTHENTICATED"),
                "{label}: {v}"
            );
        }
        // Mutations: an invalid request, so an allowed caller gets BAD_USER_INPUT (past auth) and nothing starts.
        for (m, vars) in [
            (CREATE_INSTANCE, json!({ "i": { "name": "X" } })),
            (
                CREATE_IMAGE,
                json!({ "i": { "name": "X", "instanceId": unknown } }),
            ),
            (
                "mutation($id: UUID!) { deleteImage(id: $id) { id } }",
                json!({ "id": unknown }),
            ),
            (
                "mutation($id: UUID!) { deleteInstance(id: $id) { id } }",
                json!({ "id": unknown }),
            ),
            (
                "mutation($id: UUID!) { cancelTask(id: $id) { id } }",
                json!({ "id": unknown }),
            ),
        ] {
            let (_, v) = s.gql_raw(m, vars, tok).await.unwrap();
            let code = code_field(&v).0;
            let expected = if !read {
                "UNAUTHENTICATED"
            } else if !write {
                "FORBIDDEN"
            } else if m.contains("($id") {
                "NOT_FOUND"
            } else {
                "BAD_USER_INPUT"
            };
            assert_eq!(code, expected, "{label} {m}: {v}");
        }
        // REST.
        let (status, _) = rest(&s, "GET", "/api/instances", None, tok).await;
        assert_eq!(status, if read { 200 } else { 401 }, "{label} REST GET");
        let (status, _) = rest(
            &s,
            "POST",
            "/api/images",
            Some(json!({ "name": "X", "instance_id": unknown })),
            tok,
        )
        .await;
        assert_eq!(
            status,
            if !read {
                401
            } else if !write {
                403
            } else {
                400
            },
            "{label} REST POST"
        );
        let (status, _) = rest(&s, "GET", "/metrics", None, tok).await;
        assert_eq!(status, if read { 200 } else { 401 }, "{label} /metrics");
        // The WebSocket: connection_init decides.
        let sub = Subscription::start(
            &s,
            tok.unwrap_or(""),
            "subscription { taskUpdates { task { id } } }",
            json!({}),
        )
        .await;
        assert_eq!(sub.is_ok(), read, "{label} WebSocket");
    }
    for open in ["/healthz", "/readyz"] {
        let (status, _) = rest(&s, "GET", open, None, None).await;
        assert_eq!(status, 200, "{open}");
    }
    // Who did what is recorded on the task.
    let (status, v) = rest(
        &s,
        "POST",
        "/api/instances",
        Some(json!({ "name": "by-operator", "password": PW })),
        Some(&operator),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["task"]["created_by"], "ci-operator");
    wait_running(&s, v["task"]["id"].as_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_limits() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[("SNAPGRES_MAX_ACTIVE_TASKS_PER_TOKEN", "1")])
        .await
        .unwrap();
    // One unfinished task per token: the second request is refused with a clear CONFLICT.
    let d = s
        .gql(
            CREATE_INSTANCE,
            json!({ "i": { "name": "first", "password": PW } }),
        )
        .await
        .unwrap();
    let (_, v) = s
        .gql_raw(
            CREATE_INSTANCE,
            json!({ "i": { "name": "second", "password": PW } }),
            Some(&s.token),
        )
        .await
        .unwrap();
    assert_eq!(code_field(&v).0, "CONFLICT", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unfinished tasks"),
        "{v}"
    );
    wait_running(&s, d["createInstance"]["task"]["id"].as_str().unwrap()).await;
    let d = s
        .gql(
            CREATE_INSTANCE,
            json!({ "i": { "name": "second", "password": PW } }),
        )
        .await
        .unwrap();
    wait_running(&s, d["createInstance"]["task"]["id"].as_str().unwrap()).await;
    // Request bodies over 1 MiB are refused.
    let big = "x".repeat(2 * 1024 * 1024);
    let body =
        json!({ "query": format!("{{ instances {{ nodes {{ id }} }} }} # {big}") }).to_string();
    let resp = reqwest::Client::new()
        .post(format!("{}/graphql", s.url))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        // The server may answer 413 and close before the client has finished writing.
        Err(e) => assert!(
            format!("{e:?}").contains("BrokenPipe") || format!("{e:?}").contains("reset"),
            "{e:?}"
        ),
    }
    // Too deep a query is refused before it runs.
    let mut q = String::from("name");
    for f in [
        "steps",
        "tasks",
        "sourceInstance",
        "sourceImage",
        "sourceInstance",
        "sourceImage",
        "sourceInstance",
        "sourceImage",
        "sourceInstance",
        "sourceImage",
        "sourceInstance",
        "nodes",
        "images",
    ] {
        q = format!("{f} {{ {q} }}");
    }
    let deep = format!("{{ {q} }}");
    let (_, v) = s.gql_raw(&deep, json!({}), Some(&s.token)).await.unwrap();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nested too deep"),
        "{v}"
    );
}
