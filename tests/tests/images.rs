//! Images: a flipped byte in a stored object fails the restore in `run_restore_job`, naming the
//! object, with nothing restored and the target cleaned up; `deleteImage` removes every object
//! and frees the name.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sea_orm::sqlx;
use serde_json::{json, Value};
use snapgres_e2e::*;

const PW: &str = "images-test-pw-1";

async fn instance_with_data(s: &Server) -> String {
    let d = s.gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "src", "password": PW } })).await.unwrap();
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
    let i = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { connection { port } } }",
            json!({ "id": id }),
        )
        .await
        .unwrap();
    let mut c = connect(
        "127.0.0.1",
        i["instance"]["connection"]["port"].as_u64().unwrap() as u16,
        "postgres",
        PW,
    )
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g",
    )
    .execute(&mut c)
    .await
    .unwrap();
    id
}

async fn image(s: &Server, instance_id: &str, name: &str) -> (String, Value) {
    let d = s.gql("mutation($i: CreateImageInput!) { createImage(input: $i) { image { id } task { id } } }", json!({ "i": { "name": name, "instanceId": instance_id } })).await.unwrap();
    let t = s
        .wait_task(
            d["createImage"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    (
        d["createImage"]["image"]["id"].as_str().unwrap().to_owned(),
        t,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_fails_restore_naming_the_object() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]).await.unwrap();
    let src = instance_with_data(&s).await;
    let (image_id, _) = image(&s, &src, "to-corrupt").await;
    let key = format!("images/{image_id}/databases/0000.dump");
    let path = data.join("images").join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let d = s
        .gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "victim", "sourceImageId": image_id } }))
        .await
        .unwrap();
    let t = s
        .wait_task(
            d["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "FAILED", "{t}");
    let failed: Vec<&Value> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["state"] == "FAILED")
        .collect();
    assert_eq!(failed.len(), 1, "{t}");
    assert_eq!(failed[0]["name"], "run_restore_job");
    assert_eq!(
        failed[0]["attempt"], 1,
        "a checksum mismatch is not retried"
    );
    let err = failed[0]["error"].as_str().unwrap();
    assert!(err.contains(&key) && err.contains("corrupt"), "{err}");
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .starts_with("run_restore_job: "),
        "{t}"
    );
    // Nothing was restored and nothing of the target is left; its name is free again.
    let later: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .skip(4)
        .map(|st| st["state"].as_str().unwrap())
        .collect();
    assert!(later.iter().all(|st| *st == "SKIPPED"), "{later:?}");
    let inst = s
        .gql(
            "query($id: UUID!) { instance(id: $id) { state connection { port } } }",
            json!({ "id": d["createInstance"]["instance"]["id"] }),
        )
        .await
        .unwrap();
    assert_eq!(inst["instance"]["state"], "FAILED");
    let dirs: Vec<_> = std::fs::read_dir(data.join("instances"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    assert!(dirs.iter().all(|n| !n.starts_with("victim-")), "{dirs:?}");
    let again = s
        .gql("mutation($i: CreateInstanceInput!) { createInstance(input: $i) { instance { id } task { id } } }", json!({ "i": { "name": "victim", "password": PW } }))
        .await
        .unwrap();
    let t = s
        .wait_task(
            again["createInstance"]["task"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_image_removes_every_object_and_frees_the_name() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]).await.unwrap();
    let src = instance_with_data(&s).await;
    let (keep_id, _) = image(&s, &src, "keep").await;
    let (gone_id, _) = image(&s, &src, "nightly").await;
    let gone_dir = data.join("images/images").join(&gone_id);
    assert!(gone_dir.join("manifest.json").exists());
    let d = s
        .gql(
            "mutation($id: UUID!) { deleteImage(id: $id) { id kind } }",
            json!({ "id": gone_id }),
        )
        .await
        .unwrap();
    assert_eq!(d["deleteImage"]["kind"], "delete_image");
    let t = s
        .wait_task(
            d["deleteImage"]["id"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(t["state"], "SUCCEEDED", "{t}");
    let names: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mark_deleting", "delete_objects", "mark_deleted"]);
    assert!(
        !gone_dir.exists(),
        "every object of the deleted image is gone"
    );
    assert!(
        data.join("images/images")
            .join(&keep_id)
            .join("manifest.json")
            .exists(),
        "other images untouched"
    );
    let img = s
        .gql(
            "query($id: UUID!) { image(id: $id) { state } }",
            json!({ "id": gone_id }),
        )
        .await
        .unwrap();
    assert_eq!(img["image"]["state"], "DELETED");
    // Deleting it again: NOT_FOUND. Restoring it: NOT_FOUND.
    let (_, again) = s
        .gql_raw(
            "mutation($id: UUID!) { deleteImage(id: $id) { id } }",
            json!({ "id": gone_id }),
            Some(&s.token),
        )
        .await
        .unwrap();
    assert_eq!(
        again["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{again}"
    );
    let (_, restore) = s
        .gql_raw(
            "mutation($i: CreateInstanceInput!) { createInstance(input: $i) { task { id } } }",
            json!({ "i": { "name": "from-deleted", "sourceImageId": gone_id } }),
            Some(&s.token),
        )
        .await
        .unwrap();
    assert_eq!(
        restore["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{restore}"
    );
    assert_eq!(restore["errors"][0]["extensions"]["field"], "sourceImageId");
    // The name is free again.
    let (reused, _) = image(&s, &src, "nightly").await;
    assert_ne!(reused, gone_id);
}
