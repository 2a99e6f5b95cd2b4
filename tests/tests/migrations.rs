//! Migrations apply on SQLite (the default) and on PostgreSQL (a server this test starts from the
//! installed binaries), are idempotent, and produce a schema the entities can use; on
//! PostgreSQL, concurrent claimers take each task exactly once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait};
use snapgres::config::SecretString;
use snapgres_e2e::*;

async fn check_schema(db: &DatabaseConnection) {
    Migrator::up(db, None).await.unwrap();
    // Running again changes nothing.
    Migrator::up(db, None).await.unwrap();
    assert!(Migrator::get_pending_migrations(db)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(Migrator::get_applied_migrations(db).await.unwrap().len(), 6);
    // Every entity can be queried against the migrated schema.
    entity::instance::Entity::find().all(db).await.unwrap();
    entity::image::Entity::find().all(db).await.unwrap();
    entity::task::Entity::find().all(db).await.unwrap();
    entity::task_step::Entity::find().all(db).await.unwrap();
    entity::task_log::Entity::find().all(db).await.unwrap();
    entity::api_token::Entity::find().all(db).await.unwrap();
    // Live names are unique: the database settles races for a name.
    let now = chrono::Utc::now();
    let row = |id: uuid::Uuid| {
        use sea_orm::Set;
        entity::image::ActiveModel {
            id: Set(id),
            name: Set("same".into()),
            live_name: Set(Some("same".into())),
            description: Set(None),
            source_instance_id: Set(None),
            source_instance_name: Set("x".into()),
            postgres_version: Set("15".into()),
            image_type: Set(entity::ImageType::Stock),
            storage_size_gb: Set(1),
            state: Set(entity::image::ImageState::Creating),
            store: Set("file".into()),
            container: Set("c".into()),
            path: Set("p".into()),
            format: Set("f".into()),
            size_bytes: Set(None),
            checksum: Set(None),
            databases: Set(serde_json::json!([])),
            source_password_enc: Set("enc".into()),
            error: Set(None),
            task_id: Set(None),
            created_at: Set(now),
            ready_at: Set(None),
        }
    };
    entity::image::Entity::insert(row(uuid::Uuid::new_v4()))
        .exec(db)
        .await
        .unwrap();
    let err = entity::image::Entity::insert(row(uuid::Uuid::new_v4()))
        .exec(db)
        .await
        .unwrap_err();
    assert!(snapgres::error::is_unique_violation(&err), "{err}");
}

#[tokio::test]
async fn migrations_apply_on_sqlite() {
    let dir = temp_dir();
    let url = SecretString::new(format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("cms.db").display()
    ));
    let db = snapgres::db::connect(&url).await.unwrap();
    check_schema(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_on_postgres_and_claims_are_exclusive() {
    let pg = TempPg::start().unwrap();
    let admin = snapgres::db::connect(&SecretString::new(pg.url("postgres")))
        .await
        .unwrap();
    admin
        .execute_unprepared("CREATE DATABASE snapgres_cms")
        .await
        .unwrap();
    let db = snapgres::db::connect(&SecretString::new(pg.url("snapgres_cms")))
        .await
        .unwrap();
    check_schema(&db).await;

    // Two engines (as two replicas would be) racing for 20 queued tasks: each is claimed once.
    use snapgres::tasks::{
        Engine, EngineConfig, EventBus, Outcome, RetryPolicy, StepCtx, StepDef, StepError, Workflow,
    };
    struct Noop;
    #[async_trait::async_trait]
    impl Workflow for Noop {
        fn kind(&self) -> &'static str {
            "noop"
        }
        fn steps(&self, _: &serde_json::Value) -> Vec<StepDef> {
            vec![StepDef::new("only", RetryPolicy::default())]
        }
        async fn run_step(&self, _: &str, _: &StepCtx) -> Result<(), StepError> {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(())
        }
        async fn cleanup(&self, _: &StepCtx, _: &Outcome) -> Result<(), StepError> {
            Ok(())
        }
    }
    let a = Engine::new(db.clone(), EventBus::new(), EngineConfig::default());
    let b = Engine::new(db.clone(), EventBus::new(), EngineConfig::default());
    for e in [&a, &b] {
        e.register(Arc::new(Noop));
    }
    let mut ids = Vec::new();
    for _ in 0..20 {
        let id = uuid::Uuid::new_v4();
        a.enqueue(&db, id, "noop", None, serde_json::json!({}), None)
            .await
            .unwrap();
        ids.push(id);
    }
    a.start(3);
    b.start(3);
    a.wake(ids[0]);
    b.wake(ids[0]);
    let start = std::time::Instant::now();
    loop {
        let all = entity::task::Entity::find().all(&db).await.unwrap();
        if all.iter().all(|t| t.state.is_terminal()) {
            for t in &all {
                assert_eq!(
                    (t.state, t.attempt),
                    (entity::task::TaskState::Succeeded, 1),
                    "{t:?}"
                );
            }
            let steps = entity::task_step::Entity::find().all(&db).await.unwrap();
            assert_eq!(steps.len(), 20);
            assert!(steps.iter().all(|s| s.attempt == 1));
            let owners: std::collections::HashSet<_> =
                all.iter().filter_map(|t| t.lease_owner.clone()).collect();
            assert_eq!(owners.len(), 2, "both replicas took work");
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    a.shutdown();
    b.shutdown();
}
