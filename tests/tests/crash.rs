//! Crash safety: SIGKILL the server while a backup is in `run_backup`; a restarted server takes
//! the task over after its lease expires, finishes it exactly once, and leaves exactly the
//! image's objects in the store (nothing stray from the interrupted attempt).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sea_orm::sqlx::{self, Row};
use serde_json::json;
use sha2::{Digest, Sha256};
use snapgres_e2e::*;

const PASSWORD: &str = "crash-test-pw-1";

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_run_backup_finishes_exactly_once() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut s = Server::start(&data, &[]).await.unwrap();
    let d = s
        .gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "busy", "password": PASSWORD } }))
        .await
        .unwrap();
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let inst_id = d["createInstance"]["instance"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let i = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": inst_id }),
        )
        .await
        .unwrap();
    let port = i["instance"]["connection"]["port"].as_u64().unwrap() as u16;
    let mut c = connect("127.0.0.1", port, "postgres", PASSWORD)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
    )
    .execute(&mut c)
    .await
    .unwrap();

    // Hold a lock pg_dump must wait for, so the backup is certainly inside run_backup when killed.
    let mut lock = connect("127.0.0.1", port, "postgres", PASSWORD)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();

    let d = s
        .gql("mutation($i: CreateImageInput!) { createImage(input: $i) { image { id } task { id } } }", json!({ "i": { "name": "interrupted", "instanceId": inst_id } }))
        .await
        .unwrap();
    let image_id = d["createImage"]["image"]["id"].as_str().unwrap().to_owned();
    let task_id = d["createImage"]["task"]["id"].as_str().unwrap().to_owned();
    let image_dir = data.join("images/images").join(&image_id);
    let start = Instant::now();
    loop {
        let t = s
            .gql(
                "query($id: UUID!) { task(id: $id) { steps { name state } } }",
                json!({ "id": task_id }),
            )
            .await
            .unwrap();
        let running = t["task"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|st| st["name"] == "run_backup" && st["state"] == "RUNNING");
        // The globals object is written before pg_dump starts: a partial image exists.
        if running && image_dir.join("globals.sql").exists() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "backup never reached run_backup: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.kill().await;
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);

    let mut s = Server::start(&data, &[]).await.unwrap();
    let t = s
        .wait_task(&task_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    assert_eq!(t["attempt"], 2, "claimed once by each server: {t}");
    let attempts: Vec<(String, i64)> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            (
                st["name"].as_str().unwrap().to_owned(),
                st["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("create_image_record".into(), 1),
            ("get_source_instance".into(), 1),
            ("run_backup".into(), 2),
            ("update_image_status".into(), 1)
        ],
        "finished steps are not re-run; the interrupted one is resumed"
    );
    assert!(t["logs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["message"].as_str().unwrap().contains("resumed")));

    // Exactly one image, READY, and exactly its objects in the store.
    let imgs = s
        .gql("{ images { nodes { id state checksum } } }", json!({}))
        .await
        .unwrap();
    let nodes = imgs["images"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{imgs}");
    assert_eq!(
        (
            nodes[0]["id"].as_str().unwrap(),
            nodes[0]["state"].as_str().unwrap()
        ),
        (image_id.as_str(), "READY")
    );
    let tasks = s
        .gql("{ tasks(first: 100) { nodes { kind state } } }", json!({}))
        .await
        .unwrap();
    assert_eq!(
        tasks["tasks"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"] == "create_image")
            .count(),
        1
    );
    let manifest_bytes = std::fs::read(image_dir.join("manifest.json")).unwrap();
    assert_eq!(
        hex_sha(&manifest_bytes),
        nodes[0]["checksum"].as_str().unwrap()
    );
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let root = data.join("images");
    let mut expected = vec![
        image_dir.join("manifest.json"),
        root.join(manifest["globals"]["key"].as_str().unwrap()),
    ];
    for db in manifest["databases"].as_array().unwrap() {
        let p = root.join(db["key"].as_str().unwrap());
        assert_eq!(
            hex_sha(&std::fs::read(&p).unwrap()),
            db["sha256"].as_str().unwrap()
        );
        expected.push(p);
    }
    expected.sort();
    assert_eq!(files_under(&root), expected, "no stray objects");

    // And the image restores to the same data.
    let d = s
        .gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "after-crash", "sourceImageId": image_id } }))
        .await
        .unwrap();
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let r = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": d["createInstance"]["instance"]["id"] }),
        )
        .await
        .unwrap();
    let mut rc = connect(
        "127.0.0.1",
        r["instance"]["connection"]["port"].as_u64().unwrap() as u16,
        "postgres",
        PASSWORD,
    )
    .await
    .unwrap();
    let row = sqlx::query("SELECT count(*) AS n, md5(string_agg(v, ',' ORDER BY id)) AS h FROM t")
        .fetch_one(&mut rc)
        .await
        .unwrap();
    let src = sqlx::query("SELECT count(*) AS n, md5(string_agg(v, ',' ORDER BY id)) AS h FROM t")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>("n"), 20000);
    assert_eq!(row.get::<String, _>("h"), src.get::<String, _>("h"));
    drop((rc, c));

    // A clean stop stops the instances; the next start brings the running ones back.
    s.stop().await;
    assert!(
        connect("127.0.0.1", port, "postgres", PASSWORD)
            .await
            .is_err(),
        "instances stop with the server"
    );
    let mut s = Server::start(&data, &[]).await.unwrap();
    let mut back = connect("127.0.0.1", port, "postgres", PASSWORD)
        .await
        .unwrap();
    let n: i64 = sqlx::query("SELECT count(*) AS n FROM t")
        .fetch_one(&mut back)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 20000);
    s.stop().await;
}

fn hex_sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}
