//! Store outage: Azurite stops while a backup uploads. `run_backup` is retried per its policy,
//! then fails; the image is FAILED (never READY with missing parts), and once the store is back
//! no partial object of the image is left.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use sea_orm::sqlx;
use serde_json::json;
use snapgres_e2e::*;

const PW: &str = "outage-test-pw-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_during_upload_fails_cleanly() {
    let mut az = Azurite::start().await.unwrap();
    let dir = temp_dir();
    let data = dir.path().join("data");
    let s = start_with(&data, &az.env()).await.unwrap();
    let d = s.gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "src", "password": PW } })).await.unwrap();
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let src = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": src }),
        )
        .await
        .unwrap();
    let port = i["instance"]["connection"]["port"].as_u64().unwrap() as u16;
    let mut c = connect("127.0.0.1", port, "postgres", PW).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g",
    )
    .execute(&mut c)
    .await
    .unwrap();
    // pg_dump waits for this lock, so the outage begins mid-backup, after globals.sql is stored.
    let mut lock = connect("127.0.0.1", port, "postgres", PW).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();

    let d = s.gql("mutation($i: CreateImageInput!) { createImage(input: $i) { image { id } task { id } } }", json!({ "i": { "name": "during-outage", "instanceId": src } })).await.unwrap();
    let image_id = d["createImage"]["image"]["id"].as_str().unwrap().to_owned();
    let task_id = d["createImage"]["task"]["id"].as_str().unwrap().to_owned();
    let prefix = format!("images/{image_id}");
    let start = Instant::now();
    while !az
        .keys(&prefix)
        .await
        .unwrap()
        .iter()
        .any(|k| k.ends_with("globals.sql"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "globals never uploaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    az.stop().await;
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();

    // run_backup fails every try while the store is down.
    let start = Instant::now();
    let step = loop {
        let t = s
            .gql(
                "query($id: UUID!) { task(id: $id) { state steps { name state attempt error } } }",
                json!({ "id": task_id }),
            )
            .await
            .unwrap();
        let st = t["task"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["name"] == "run_backup")
            .unwrap()
            .clone();
        if st["state"] == "FAILED" {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "run_backup did not fail: {t}\n{}",
            s.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(step["attempt"], 3, "retried per policy: {step}");
    let img = s
        .gql(
            "query($id: UUID!) { image(id: $id) { state } }",
            json!({ "id": image_id }),
        )
        .await
        .unwrap();
    assert_ne!(img["image"]["state"], "READY");

    // The store comes back: cleanup removes what the failed attempts left.
    az.resume().await.unwrap();
    let t = s
        .wait_task(&task_id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(t["state"], "FAILED", "{t}");
    let logs: Vec<&str> = t["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        logs.iter()
            .filter(|l| l.starts_with("run_backup attempt") && l.contains("retrying"))
            .count(),
        2,
        "{logs:#?}"
    );
    let img = s
        .gql(
            "query($id: UUID!) { image(id: $id) { state error } }",
            json!({ "id": image_id }),
        )
        .await
        .unwrap();
    assert_eq!(img["image"]["state"], "FAILED", "{img}");
    assert!(
        img["image"]["error"]
            .as_str()
            .unwrap()
            .starts_with("run_backup: "),
        "{img}"
    );
    assert!(
        az.keys(&prefix).await.unwrap().is_empty(),
        "partial objects left: {:?}",
        az.keys(&prefix).await.unwrap()
    );
}
