//! Several replicas on one PostgreSQL database (started by the test): a subscriber on an
//! API-only replica sees every step of a task another replica runs (LISTEN/NOTIFY fan-out), and
//! 20 tasks submitted to different replicas each run exactly once.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::json;
use snapgres_e2e::*;

const PW: &str = "replica-test-pw-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_work_and_events() {
    let pg = TempPg::start().unwrap();
    let admin = snapgres::db::connect(&snapgres::config::SecretString::new(pg.url("postgres")))
        .await
        .unwrap();
    admin
        .execute_unprepared("CREATE DATABASE snapgres_cms")
        .await
        .unwrap();
    drop(admin);
    let url = pg.url("snapgres_cms");
    let dir = temp_dir();
    let data = dir.path().join("data");
    let api_only = Server::start(&data, &[("DATABASE_URL", &url), ("SNAPGRES_WORKERS", "0")])
        .await
        .unwrap();
    let b = Server::start(&data, &[("DATABASE_URL", &url), ("SNAPGRES_WORKERS", "2")])
        .await
        .unwrap();
    let c = Server::start(&data, &[("DATABASE_URL", &url), ("SNAPGRES_WORKERS", "2")])
        .await
        .unwrap();

    // Submitted to the API-only replica, run by another, watched on the API-only one.
    let d = api_only
        .gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "shared", "password": PW } }))
        .await
        .unwrap();
    let task = d["createInstance"]["task"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let inst = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut sub = Subscription::start(&api_only, &api_only.token, "subscription($id: UUID!) { taskProgress(taskId: $id) { task { state } step { name state } } }", json!({ "id": task }))
        .await
        .unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut running_events = 0;
    let mut last = serde_json::Value::Null;
    while let Some(ev) = sub.next(Duration::from_secs(120)).await.unwrap() {
        let st = &ev["taskProgress"]["step"];
        if st["state"] == "RUNNING" {
            running_events += 1;
        }
        if let Some(name) = st["name"].as_str() {
            if (st["state"] == "RUNNING" || st["state"] == "SUCCEEDED")
                && !seen.iter().any(|n| n == name)
            {
                seen.push(name.to_owned());
            }
        }
        last = ev;
    }
    assert_eq!(last["taskProgress"]["task"]["state"], "SUCCEEDED", "{last}");
    assert_eq!(
        seen,
        [
            "create_volume",
            "create_secret",
            "create_config",
            "deploy_postgres",
            "wait_ready",
            "get_connection_strings",
            "test_connection"
        ]
    );
    assert!(
        running_events >= 3,
        "live events from the other replica: {running_events}"
    );

    // 20 backups, submitted round-robin to all three replicas.
    let servers = [&api_only, &b, &c];
    let mut tasks = Vec::new();
    for n in 0..20 {
        let s = servers[n % 3];
        let d = s
            .gql(
                "mutation($i: CreateImageInput!) { createImage(input: $i) { task { id } } }",
                json!({ "i": { "name": format!("img-{n}"), "instanceId": inst } }),
            )
            .await
            .unwrap();
        tasks.push(d["createImage"]["task"]["id"].as_str().unwrap().to_owned());
    }
    for t in &tasks {
        let t = b.wait_task(t, Duration::from_secs(180)).await.unwrap();
        assert_eq!(
            (t["state"].as_str(), t["attempt"].as_i64()),
            (Some("SUCCEEDED"), Some(1)),
            "{t}"
        );
        for st in t["steps"].as_array().unwrap() {
            assert_eq!(st["attempt"], 1, "each step ran exactly once: {t}");
        }
    }
    let imgs = c
        .gql(
            "{ images(first: 100, state: READY) { nodes { name } } }",
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(imgs["images"]["nodes"].as_array().unwrap().len(), 20);
    // Both working replicas took a share (the API-only one took none).
    let db = snapgres::db::connect(&snapgres::config::SecretString::new(url.clone()))
        .await
        .unwrap();
    let owners: std::collections::BTreeSet<String> =
        <entity::task::Entity as sea_orm::EntityTrait>::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|t| t.lease_owner)
            .collect();
    assert_eq!(owners.len(), 2, "{owners:?}");
    drop((api_only, b, c));
}
