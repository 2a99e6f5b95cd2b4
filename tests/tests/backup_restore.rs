//! End to end on the embedded default: the real `snapgres serve`, real PostgreSQL instances,
//! real pg_dump/pg_restore. A fresh instance gets data, an image is taken, the image is restored
//! while a graphql-transport-ws client watches, and the restored data is compared to the source.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sea_orm::sqlx::{self, Row};
use serde_json::{json, Value};
use snapgres_e2e::*;

const PASSWORD: &str = "Src-pass-7f3a9c!";
async fn create_instance(s: &Server, name: &str) -> (String, u16) {
    let d = s
        .gql(
            "mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id state } task { id } warnings } }",
            json!({ "i": { "name": name, "password": PASSWORD } }),
        )
        .await
        .unwrap();
    assert_eq!(d["createInstance"]["instance"]["state"], "CREATING");
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let id = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = s.gql("query($id: UUID!) { instance(id: $id) { state connection { host port user database uri } } }", json!({ "id": id })).await.unwrap();
    assert_eq!(i["instance"]["state"], "RUNNING");
    let c = &i["instance"]["connection"];
    assert!(!c["uri"].as_str().unwrap().contains(PASSWORD));
    (id, c["port"].as_u64().unwrap() as u16)
}

async fn exec(c: &mut sqlx::PgConnection, sql: &'static str) {
    sqlx::raw_sql(sql)
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Rows of a query as text, for comparison.
async fn rows(c: &mut sqlx::PgConnection, sql: &'static str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(&mut *c)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

const CHECKS: [&str; 5] = [
    "SELECT id::text || '|' || note || '|' || md5(blob) FROM orders ORDER BY id",
    "SELECT last_value::text FROM orders_id_seq",
    "SELECT rolname || ':' || rolcanlogin::text FROM pg_roles WHERE rolname LIKE 'app_%' ORDER BY 1",
    "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
    "SELECT count(*)::text FROM orders_view",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_round_trip_with_live_progress() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, &[]).await.unwrap();

    let (src_id, src_port) = create_instance(&s, "orders-prod").await;
    let mut c = connect("127.0.0.1", src_port, "postgres", PASSWORD)
        .await
        .unwrap();
    exec(
        &mut c,
        "CREATE ROLE app_reader LOGIN PASSWORD 'reader-pass-1';
         CREATE ROLE app_nologin;
         CREATE TABLE orders (id bigserial PRIMARY KEY, note text NOT NULL, blob bytea NOT NULL);
         INSERT INTO orders (note, blob) SELECT 'Ünïcødé ✓ ' || g || repeat('x', g % 50), decode(md5(g::text), 'hex') FROM generate_series(1, 5000) g;
         CREATE VIEW orders_view AS SELECT * FROM orders WHERE id % 2 = 0;
         GRANT SELECT ON orders TO app_reader;",
    )
    .await;
    exec(&mut c, "CREATE DATABASE analytics").await;
    let source_rows: Vec<Vec<String>> = {
        let mut out = Vec::new();
        for q in CHECKS {
            out.push(rows(&mut c, q).await);
        }
        out
    };
    assert_eq!(source_rows[0].len(), 5000);
    let mut a = connect("127.0.0.1", src_port, "analytics", PASSWORD)
        .await
        .unwrap();
    exec(&mut a, "CREATE TABLE events AS SELECT g AS id, now() - g * interval '1 minute' AS at FROM generate_series(1, 777) g;").await;
    let source_events = rows(
        &mut a,
        "SELECT id::text || '|' || at::text FROM events ORDER BY id",
    )
    .await;

    // Take the image.
    let d = s
        .gql(
            "mutation($i: CreateImageInput!) { createImage(input: $i) { image { id name state } task { id } } }",
            json!({ "i": { "name": "orders-nightly", "instanceId": src_id, "description": "before the migration" } }),
        )
        .await
        .unwrap();
    let image_id = d["createImage"]["image"]["id"].as_str().unwrap().to_owned();
    // A second image with the same name is refused at once.
    let (_, dup) = s
        .gql_raw(
            "mutation($i: CreateImageInput!) { createImage(input: $i) { image { id } } }",
            json!({ "i": { "name": "orders-nightly", "instanceId": src_id } }),
            Some(&s.token),
        )
        .await
        .unwrap();
    assert_eq!(dup["errors"][0]["extensions"]["code"], "CONFLICT", "{dup}");
    let t = s
        .wait_task(
            d["createImage"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let names: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "create_image_record",
            "get_source_instance",
            "run_backup",
            "update_image_status"
        ]
    );
    let img = s.gql("query($id: UUID!) { image(id: $id) { state sizeBytes checksum databases postgresVersion imageType } }", json!({ "id": image_id })).await.unwrap();
    let img = &img["image"];
    assert_eq!(img["state"], "READY");
    assert!(img["sizeBytes"].as_f64().unwrap() > 10_000.0, "{img}");
    assert_eq!(img["checksum"].as_str().unwrap().len(), 64);
    assert_eq!(img["databases"], json!(["analytics", "postgres"]));

    // Restore it, with a password that must be ignored, while a subscriber watches.
    let d = s
        .gql(
            "mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } warnings } }",
            json!({ "i": { "name": "orders-copy", "password": "not-the-source-pw", "sourceImageId": image_id } }),
        )
        .await
        .unwrap();
    let warnings = d["createInstance"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("password ignored")),
        "{warnings:?}"
    );
    let copy_id = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let task_id = d["createInstance"]["task"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut sub = Subscription::start(
        &s,
        &s.token,
        "subscription($id: UUID!) { taskProgress(taskId: $id) { task { state } step { name state done total unit } log { message } } }",
        json!({ "id": task_id }),
    )
    .await
    .unwrap();
    let mut events: Vec<Value> = Vec::new();
    while let Some(ev) = sub.next(Duration::from_secs(120)).await.unwrap() {
        events.push(ev);
    }
    let last = events.last().unwrap();
    assert_eq!(last["taskProgress"]["task"]["state"], "SUCCEEDED", "{last}");
    // The step names, in the order they were first seen running or done.
    let mut seen: Vec<String> = Vec::new();
    let mut live_running = 0;
    for e in &events {
        let step = &e["taskProgress"]["step"];
        if let (Some(name), Some(state)) = (step["name"].as_str(), step["state"].as_str()) {
            if state == "RUNNING" {
                live_running += 1;
            }
            if (state == "RUNNING" || state == "SUCCEEDED") && !seen.iter().any(|n| n == name) {
                seen.push(name.to_owned());
            }
        }
    }
    assert_eq!(seen, RESTORE_STEPS, "{events:#?}");
    assert!(
        live_running >= 5,
        "steps should be seen running live, saw {live_running}"
    );
    let done_bytes = events.iter().filter_map(|e| {
        let st = &e["taskProgress"]["step"];
        (st["name"] == "run_restore_job" && st["unit"] == "bytes").then(|| {
            (
                st["done"].as_f64().unwrap_or(0.0),
                st["total"].as_f64().unwrap_or(-1.0),
            )
        })
    });
    let done_bytes: Vec<(f64, f64)> = done_bytes.collect();
    assert!(
        done_bytes.last().is_some_and(|(d, t)| d == t && *d > 0.0),
        "run_restore_job reports bytes to completion: {done_bytes:?}"
    );
    assert!(
        done_bytes.windows(2).all(|w| w[0].0 <= w[1].0),
        "done never goes down: {done_bytes:?}"
    );
    assert!(
        done_bytes.iter().all(|(d, t)| d <= t),
        "done never exceeds total: {done_bytes:?}"
    );

    // The restored instance: same version and type, the source's password, the same data.
    let r = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { state postgresVersion imageType sourceImage { id } connection { port } } }",
            json!({ "id": copy_id }),
        )
        .await
        .unwrap();
    let r = &r["instance"];
    assert_eq!(
        (
            r["state"].as_str(),
            r["imageType"].as_str(),
            r["sourceImage"]["id"].as_str()
        ),
        (Some("RUNNING"), Some("STOCK"), Some(image_id.as_str()))
    );
    let copy_port = r["connection"]["port"].as_u64().unwrap() as u16;
    assert_ne!(copy_port, src_port);
    assert!(
        connect("127.0.0.1", copy_port, "postgres", "not-the-source-pw")
            .await
            .is_err(),
        "the request's password must not work"
    );
    let mut rc = connect("127.0.0.1", copy_port, "postgres", PASSWORD)
        .await
        .unwrap();
    for (q, expected) in CHECKS.iter().zip(&source_rows) {
        assert_eq!(&rows(&mut rc, q).await, expected, "{q}");
    }
    let mut ra = connect("127.0.0.1", copy_port, "analytics", PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        rows(
            &mut ra,
            "SELECT id::text || '|' || at::text FROM events ORDER BY id"
        )
        .await,
        source_events
    );
    // The role came back with its password and privileges.
    let opts = sea_orm::sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(copy_port)
        .username("app_reader")
        .password("reader-pass-1")
        .database("postgres");
    let mut reader = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .unwrap();
    assert_eq!(
        rows(&mut reader, "SELECT count(*)::text FROM orders").await,
        ["5000"]
    );

    // No plaintext password anywhere: not in the data dir (CMS database, WAL, images, logs),
    // not on any process's command line, not in the server's log.
    assert_eq!(any_file_contains(&data, PASSWORD.as_bytes()), None);
    assert!(!all_command_lines().contains(PASSWORD));
    assert!(!s.log_text().contains(PASSWORD));
    // Nor in any API response of the run, subscription events included.
    let responses = s.responses.lock().unwrap().clone();
    assert!(
        responses.len() > 10,
        "{} responses recorded",
        responses.len()
    );
    assert!(responses
        .iter()
        .all(|r| !r.contains(PASSWORD) && !r.contains("not-the-source-pw")));
    assert!(events.iter().all(|e| !e.to_string().contains(PASSWORD)));
    // The image row keeps the source password, encrypted.
    let db = sea_orm::Database::connect(format!(
        "sqlite://{}?mode=ro",
        data.join("snapgres.db").display()
    ))
    .await
    .unwrap();
    let row = <entity::image::Entity as sea_orm::EntityTrait>::find_by_id(
        uuid::Uuid::parse_str(&image_id).unwrap(),
    )
    .one(&db)
    .await
    .unwrap()
    .unwrap();
    assert!(row.source_password_enc.len() > 20 && !row.source_password_enc.contains(PASSWORD));
    drop(db);

    // Delete both instances: their directories go away.
    for id in [&copy_id, &src_id] {
        let d = s
            .gql(
                "mutation($id: UUID!) { deleteInstance(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await
            .unwrap();
        let t = s
            .wait_task(
                d["deleteInstance"]["id"].as_str().unwrap(),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(t["state"], "SUCCEEDED", "{t}");
    }
    assert_eq!(
        std::fs::read_dir(data.join("instances")).unwrap().count(),
        0
    );
    let inst = s
        .gql(
            "{ instances(state: DELETED) { nodes { name } } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(inst["instances"]["nodes"].as_array().unwrap().len(), 2);
    s.stop().await;
}
