//! The Kubernetes platform against kube-rs's `tower_test` mock API server (no cluster can run
//! here): a small in-memory API server answers creates, reads, lists, logs and deletes. The real
//! workflows run through the real engine; test_connection reaches a real PostgreSQL server (the
//! mock load balancer's address is 127.0.0.1).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use snapgres::platform::kubernetes::{KubeSettings, KubernetesPlatform, Waits};
use snapgres::platform::Platform;
use snapgres::secrets::{Cipher, Password};
use snapgres::service::{Actor, Services};
use snapgres::storage::Storage;
use snapgres::tasks::{Engine, EngineConfig, EventBus};
use snapgres::workflows::{self, Deps, Limits};
use snapgres_e2e::*;

#[derive(Clone, Copy, PartialEq)]
enum JobOutcome {
    Succeed,
    Fail,
    Never,
}

struct Fake {
    objects: BTreeMap<String, Value>,
    /// "create jobs/x", "delete pvc/y", … in order.
    calls: Vec<String>,
    job_outcome: JobOutcome,
    /// What the backup Job's pod reports.
    termination: String,
}

fn status(code: u16, reason: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": reason, "reason": reason, "code": code })
}

impl Fake {
    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> (u16, String) {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let ns = segs.iter().position(|s| *s == "namespaces").unwrap();
        let rest = &segs[ns + 2..];
        let plural = rest[0];
        let name = rest.get(1).copied();
        let sub = rest.get(2).copied();
        let selector = query
            .and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("labelSelector="))
            })
            .map(|s| s.replace("%3D", "=").replace("%2F", "/"));
        let key = |n: &str| format!("{plural}/{n}");
        match (method.clone(), name, sub) {
            (Method::POST, None, _) => {
                let v: Value = serde_json::from_slice(body).unwrap();
                let n = v["metadata"]["name"].as_str().unwrap().to_owned();
                self.calls.push(format!("create {}", key(&n)));
                if self.objects.contains_key(&key(&n)) {
                    return (409, status(409, "AlreadyExists").to_string());
                }
                self.objects.insert(key(&n), v.clone());
                (201, v.to_string())
            }
            (Method::GET, Some(pod), Some("log")) => (
                200,
                format!("pg_restore: starting\nobject images/x is corrupt (from {pod})\n"),
            ),
            (Method::GET, Some(n), None) => {
                let Some(mut v) = self.objects.get(&key(n)).cloned() else {
                    return (404, status(404, "NotFound").to_string());
                };
                match plural {
                    "jobs" => {
                        v["status"] = match self.job_outcome {
                            JobOutcome::Succeed => {
                                json!({ "conditions": [{ "type": "Complete", "status": "True" }], "succeeded": 1 })
                            }
                            JobOutcome::Fail => {
                                json!({ "conditions": [{ "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit" }], "failed": 1 })
                            }
                            JobOutcome::Never => json!({ "active": 1 }),
                        }
                    }
                    "statefulsets" => v["status"] = json!({ "replicas": 1, "readyReplicas": 1 }),
                    "services" if v["spec"]["type"] == "LoadBalancer" => {
                        v["status"] =
                            json!({ "loadBalancer": { "ingress": [{ "ip": "127.0.0.1" }] } })
                    }
                    _ => {}
                }
                (200, v.to_string())
            }
            (Method::GET, None, _) => {
                let sel = selector.unwrap_or_default();
                let (k, v) = sel.split_once('=').unwrap_or(("", ""));
                let items: Vec<Value> = if plural == "pods"
                    && k == "job-name"
                    && self.objects.contains_key(&format!("jobs/{v}"))
                {
                    let (code, reason, message) = match self.job_outcome {
                        JobOutcome::Fail => (
                            1,
                            "Error",
                            "object images/x/databases/0000.dump is corrupt".to_owned(),
                        ),
                        _ => (0, "Completed", self.termination.clone()),
                    };
                    vec![
                        json!({ "metadata": { "name": format!("{v}-x7k2p"), "labels": { "job-name": v } },
                        "status": { "containerStatuses": [{ "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                            "state": { "terminated": { "exitCode": code, "reason": reason, "message": message } } }] } }),
                    ]
                } else {
                    self.objects
                        .iter()
                        .filter(|(key, obj)| {
                            key.starts_with(&format!("{plural}/"))
                                && obj["metadata"]["labels"][k] == v
                        })
                        .map(|(_, o)| o.clone())
                        .collect()
                };
                (
                    200,
                    json!({ "kind": "List", "apiVersion": "v1", "metadata": {}, "items": items })
                        .to_string(),
                )
            }
            (Method::DELETE, Some(n), None) => {
                self.calls.push(format!("delete {}", key(n)));
                match self.objects.remove(&key(n)) {
                    Some(_) => (200, json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200 }).to_string()),
                    None => (404, status(404, "NotFound").to_string()),
                }
            }
            (m, n, s) => panic!("unexpected request {m} {path} ({n:?}, {s:?})"),
        }
    }
}

struct Stack {
    services: Services,
    fake: Arc<Mutex<Fake>>,
    platform: KubernetesPlatform,
    _dir: tempfile::TempDir,
    _pg: TempPg,
}

async fn stack(outcome: JobOutcome) -> Stack {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = TempPg::start().unwrap();
    let dir = temp_dir();
    let fake = Arc::new(Mutex::new(Fake {
        objects: BTreeMap::new(),
        calls: Vec::new(),
        job_outcome: outcome,
        termination: String::new(),
    }));
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let f = Arc::clone(&fake);
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let (code, text) = f.lock().unwrap().handle(
                &parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &bytes,
            );
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(text.into_bytes()))
                    .unwrap(),
            );
        }
    });
    let client = kube::Client::new(svc, "snapgres");
    let url = snapgres::config::SecretString::new(format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("cms.db").display()
    ));
    let db = snapgres::db::connect(&url).await.unwrap();
    snapgres::db::migrate(&db).await.unwrap();
    let storage = Storage::from_url(None, dir.path(), &Default::default()).unwrap();
    let cipher = Cipher::load_or_create_key_file(&dir.path().join("key")).unwrap();
    let settings = KubeSettings {
        postgres_port: pg.port,
        ..KubeSettings::default()
    };
    let platform = KubernetesPlatform::new(
        client,
        settings,
        storage.clone(),
        Waits {
            poll: Duration::from_millis(20),
            job: Duration::from_secs(2),
            ready: Duration::from_secs(5),
        },
    );
    let limits = Limits {
        test_connection: Duration::from_secs(10),
        ..Limits::default()
    };
    let deps = Deps {
        db: db.clone(),
        platform: Arc::new(platform.clone()),
        storage: storage.clone(),
        cipher: cipher.clone(),
        limits,
    };
    let engine = Engine::new(
        db.clone(),
        EventBus::new(),
        EngineConfig {
            poll: Duration::from_millis(50),
            ..EngineConfig::default()
        },
    );
    workflows::register_all(&engine, &deps);
    engine.start(2);
    let services = Services {
        db,
        engine,
        cipher,
        platform: "kubernetes",
        namespace: "snapgres".into(),
        store_kind: storage.kind(),
        store_container: storage.container().to_owned(),
        postgres_versions: vec!["15".into()],
        max_active_tasks_per_token: 100,
    };
    Stack {
        services,
        fake,
        platform,
        _dir: dir,
        _pg: pg,
    }
}

fn admin() -> Actor {
    Actor {
        token_id: uuid::Uuid::nil(),
        name: "test".into(),
        role: entity::api_token::Role::Admin,
    }
}

async fn wait(s: &Services, id: uuid::Uuid) -> entity::task::Model {
    let start = std::time::Instant::now();
    loop {
        let t = s.task(id).await.unwrap().unwrap();
        if t.state.is_terminal() {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "task {id} stuck: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn steps(s: &Services, id: uuid::Uuid) -> Vec<(String, String)> {
    s.steps(id)
        .await
        .unwrap()
        .into_iter()
        .map(|st| (st.name, format!("{:?}", st.state)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_workflows_succeed_on_kubernetes() {
    let st = stack(JobOutcome::Succeed).await;
    let s = &st.services;
    let c = s
        .create_instance(
            &admin(),
            snapgres::service::instances::CreateInstance {
                name: "orders".into(),
                password: Some(Password::new("orders-pass-1")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let t = wait(s, c.task.id).await;
    assert_eq!(
        t.state,
        entity::task::TaskState::Succeeded,
        "{t:?} {:?}",
        steps(s, c.task.id).await
    );
    let k = c.instance.k8s_name.clone();
    assert_eq!(
        st.fake.lock().unwrap().calls,
        [
            format!("create persistentvolumeclaims/{k}-data"),
            format!("create secrets/{k}-credentials"),
            format!("create configmaps/{k}-config"),
            format!("create statefulsets/{k}"),
            format!("create services/{k}")
        ],
        "objects created in order"
    );
    let inst = s.instance(c.instance.id).await.unwrap().unwrap();
    assert_eq!(
        (inst.host.as_deref(), inst.state),
        (Some("127.0.0.1"), entity::instance::InstanceState::Running)
    );

    // Backup: the Job's termination message becomes the manifest; the Job is deleted.
    let (image, task) = s
        .create_image(
            &admin(),
            snapgres::service::images::CreateImage {
                name: "nightly".into(),
                instance_id: inst.id,
                description: None,
            },
        )
        .await
        .unwrap();
    let prefix = format!("images/{}", image.id);
    st.fake.lock().unwrap().termination = json!({
        "globals": { "key": format!("{prefix}/globals.sql"), "size": 512, "sha256": "a".repeat(64) },
        "databases": [{ "name": "postgres", "key": format!("{prefix}/databases/0000.dump"), "size": 4096, "sha256": "b".repeat(64) },
                      { "name": "shop", "key": format!("{prefix}/databases/0001.dump"), "size": 8192, "sha256": "c".repeat(64) }]
    })
    .to_string();
    st.fake.lock().unwrap().calls.clear();
    let t = wait(s, task.id).await;
    assert_eq!(
        t.state,
        entity::task::TaskState::Succeeded,
        "{t:?} {:?}",
        steps(s, task.id).await
    );
    let img = s.image(image.id).await.unwrap().unwrap();
    assert_eq!(img.state, entity::image::ImageState::Ready);
    assert_eq!(img.size_bytes, Some(512 + 4096 + 8192));
    assert_eq!(img.databases, json!(["postgres", "shop"]));
    let calls = st.fake.lock().unwrap().calls.clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].starts_with("create jobs/")
            && calls[0].ends_with(&task.id.simple().to_string()[..8]),
        "{calls:?}"
    );
    assert!(
        calls[1].starts_with("delete jobs/"),
        "the Job is cleaned up: {calls:?}"
    );
    let logs = s.logs(task.id, 100).await.unwrap();
    assert!(logs.iter().any(|l| l.message.contains("run-backup") && l.message.contains("pg_restore: starting")), "job log copied: {logs:?}");

    // Restore: PVC, then Secret + ConfigMap + restore Job, Job read and deleted, then PostgreSQL.
    st.fake.lock().unwrap().calls.clear();
    let r = s
        .create_instance(
            &admin(),
            snapgres::service::instances::CreateInstance {
                name: "orders-copy".into(),
                source_image_id: Some(image.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let t = wait(s, r.task.id).await;
    assert_eq!(
        t.state,
        entity::task::TaskState::Succeeded,
        "{t:?} {:?}",
        steps(s, r.task.id).await
    );
    let k = r.instance.k8s_name.clone();
    let calls = st.fake.lock().unwrap().calls.clone();
    let kinds: Vec<String> = calls
        .iter()
        .map(|c| c.split('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "create persistentvolumeclaims",
            "create secrets",
            "create configmaps",
            "create jobs",
            "delete jobs",
            "create statefulsets",
            "create services"
        ],
        "{calls:?}"
    );
    assert!(calls.contains(&format!("create services/{k}")));
    // A re-run after a crash finds what exists and creates no duplicates.
    let spec = workflows::spec_of(&s.instance(r.instance.id).await.unwrap().unwrap());
    st.platform.create_volume(&spec).await.unwrap();
    st.platform
        .deploy_postgres_from_volume(&spec)
        .await
        .unwrap();
    let objs = st
        .fake
        .lock()
        .unwrap()
        .objects
        .keys()
        .filter(|key| key.contains(&k))
        .count();
    assert_eq!(
        objs, 5,
        "pvc, secret, configmap, statefulset, service — once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_restore_job_fails_the_step_and_removes_everything() {
    let st = stack(JobOutcome::Succeed).await;
    let s = &st.services;
    let c = s
        .create_instance(
            &admin(),
            snapgres::service::instances::CreateInstance {
                name: "src".into(),
                password: Some(Password::new("src-pass-123")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        wait(s, c.task.id).await.state,
        entity::task::TaskState::Succeeded
    );
    let (image, task) = s
        .create_image(
            &admin(),
            snapgres::service::images::CreateImage {
                name: "img".into(),
                instance_id: c.instance.id,
                description: None,
            },
        )
        .await
        .unwrap();
    let prefix = format!("images/{}", image.id);
    st.fake.lock().unwrap().termination = json!({ "globals": { "key": format!("{prefix}/globals.sql"), "size": 1, "sha256": "d".repeat(64) }, "databases": [] }).to_string();
    assert_eq!(
        wait(s, task.id).await.state,
        entity::task::TaskState::Succeeded
    );

    st.fake.lock().unwrap().job_outcome = JobOutcome::Fail;
    let r = s
        .create_instance(
            &admin(),
            snapgres::service::instances::CreateInstance {
                name: "doomed".into(),
                source_image_id: Some(image.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let t = wait(s, r.task.id).await;
    assert_eq!(t.state, entity::task::TaskState::Failed);
    let err = t.error.unwrap();
    assert!(
        err.starts_with("wait_restore_job: ")
            && err.contains("BackoffLimitExceeded")
            && err.contains("is corrupt")
            && err.contains("log tail"),
        "{err}"
    );
    let k = r.instance.k8s_name;
    let left: Vec<String> = st
        .fake
        .lock()
        .unwrap()
        .objects
        .keys()
        .filter(|key| key.contains(&k))
        .cloned()
        .collect();
    assert!(
        left.is_empty(),
        "everything the restore created is gone: {left:?}"
    );
    let inst = s.instance(r.instance.id).await.unwrap().unwrap();
    assert_eq!(inst.state, entity::instance::InstanceState::Failed);
    assert_eq!(inst.live_dns_label, None, "the DNS label is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_never_finishes_hits_the_timeout() {
    let st = stack(JobOutcome::Never).await;
    let spec = snapgres::platform::InstanceSpec {
        id: uuid::Uuid::nil(),
        k8s_name: "slow-1a2b3c4d".into(),
        dns_label: "slow".into(),
        port: 5432,
        postgres_version: "15".into(),
        image_type: entity::ImageType::Stock,
        storage_size_gb: 1,
    };
    let image_id = uuid::Uuid::new_v4();
    let rs = snapgres::platform::RestoreSpec {
        task_id: uuid::Uuid::new_v4(),
        image_id,
        keys: snapgres::storage::ImageKeys::new(image_id),
        manifest_sha256: "e".repeat(64),
        password: Password::new("x-password"),
    };
    let (tx, _receivers) = snapgres::platform::Progress::channel();
    st.platform
        .start_restore_job(&spec, &rs, tx.clone())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = st
        .platform
        .wait_restore_job(&spec, &rs, tx, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, snapgres::platform::Error::Timeout(..)),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        !st.fake
            .lock()
            .unwrap()
            .objects
            .keys()
            .any(|k| k.starts_with("jobs/")),
        "the timed-out Job is deleted"
    );
}
