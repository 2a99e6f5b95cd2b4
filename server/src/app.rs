//! Wires the parts together for `snapgres serve`: database, cipher, store, platform, engine,
//! workflows, services, HTTP; brings running instances back; shuts down in order.

use std::sync::Arc;

use entity::instance::{self, InstanceState};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::net::TcpListener;

use crate::config::{PlatformKind, ServeConfig};
use crate::platform::kubernetes::{KubeSettings, KubernetesPlatform, Waits};
use crate::platform::local::{LocalConfig, LocalPlatform};
use crate::platform::Platform;
use crate::secrets::Cipher;
use crate::service::Services;
use crate::storage::Storage;
use crate::tasks::{Engine, EngineConfig, EventBus};
use crate::workflows::{self, Deps, Limits};

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating the data directory {0}")]
    DataDir(String, #[source] std::io::Error),
    #[error(transparent)]
    Db(#[from] crate::db::Error),
    #[error("loading the secret key")]
    Key(#[from] crate::secrets::Error),
    #[error("opening the image store")]
    Storage(#[from] crate::storage::Error),
    #[error("setting up the local platform")]
    Platform(#[from] crate::platform::Error),
    #[error("connecting to Kubernetes")]
    Kube(#[source] kube::Error),
    #[error("creating the admin token")]
    Bootstrap(#[from] crate::error::Error),
    #[error("listening for task events from other replicas")]
    Events(#[source] sea_orm::sqlx::Error),
    #[error("listening on {0}")]
    Listen(String, #[source] std::io::Error),
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}

/// Runs the server until `shutdown` resolves.
pub async fn serve(
    cfg: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let data_dir = &cfg.db.data_dir;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| Error::DataDir(data_dir.display().to_string(), e))?;
    let db = crate::db::connect(&cfg.db.database_url()).await?;
    crate::db::migrate(&db).await?;
    let cipher = match &cfg.secret_key {
        Some(k) => Cipher::from_base64(k.expose())?,
        None => Cipher::load_or_create_key_file(&data_dir.join("secret.key"))?,
    };
    let storage = Storage::from_url(cfg.storage_url.as_deref(), data_dir, &cfg.azure)?;
    storage.ensure_container().await?;
    let platform: Arc<dyn Platform> = match cfg.platform {
        PlatformKind::Local => Arc::new(LocalPlatform::new(
            LocalConfig {
                data_dir: data_dir.clone(),
                pg_bin_dir: cfg.pg_bin_dir.clone(),
                run_as: cfg.run_as.clone(),
                restore_jobs: cfg.restore_jobs(),
                dump_compression: cfg.dump_compression,
            },
            storage.clone(),
        )?),
        PlatformKind::Kubernetes => {
            // sqlx brings ring and object_store aws-lc-rs: kube needs the process provider chosen.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = kube::Client::try_default().await.map_err(Error::Kube)?;
            let mut settings = KubeSettings::from_config(&cfg.kube);
            settings.dump_compression = cfg.dump_compression;
            settings.restore_jobs = cfg.restore_jobs();
            Arc::new(KubernetesPlatform::new(
                client,
                settings,
                storage.clone(),
                Waits::default(),
            ))
        }
    };
    let bus = EventBus::connect(&db).await.map_err(Error::Events)?;
    let engine = Engine::new(
        db.clone(),
        bus,
        EngineConfig {
            lease: cfg.lease(),
            ..EngineConfig::default()
        },
    );
    let deps = Deps {
        db: db.clone(),
        platform: Arc::clone(&platform),
        storage: storage.clone(),
        cipher: cipher.clone(),
        limits: Limits::default(),
    };
    workflows::register_all(&engine, &deps);
    let services = Services {
        db: db.clone(),
        engine: engine.clone(),
        cipher,
        platform: platform.name(),
        namespace: match cfg.platform {
            PlatformKind::Local => "local".to_owned(),
            PlatformKind::Kubernetes => cfg.kube.k8s_namespace.clone(),
        },
        store_kind: storage.kind(),
        store_container: storage.container().to_owned(),
        postgres_versions: vec!["15".to_owned()],
        max_active_tasks_per_token: cfg.max_active_tasks_per_token,
    };
    let generated = services.bootstrap_admin(cfg.admin_token.as_ref()).await?;

    // Instances that were running before this process started run again.
    let running = instance::Entity::find()
        .filter(instance::Column::State.eq(InstanceState::Running))
        .filter(instance::Column::Platform.eq(platform.name()))
        .all(&db)
        .await
        .map_err(|e| Error::Bootstrap(e.into()))?;
    for inst in &running {
        if let Err(e) = platform.ensure_running(&workflows::spec_of(inst)).await {
            tracing::error!(instance = %inst.name, error = %crate::tasks::error_chain(&e), "could not restart instance");
        } else {
            tracing::info!(instance = %inst.name, "instance running");
        }
    }

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::Listen(cfg.listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Listen(cfg.listen.to_string(), e))?;
    let workers = engine.start(cfg.workers);
    let schema = crate::graphql::schema::build(services.clone());
    let app = crate::http::router(crate::http::AppState {
        schema,
        services,
        console_dir: cfg.console_dir(),
    });

    // Printed to stdout (not the log) so an operator sees it once; never logged.
    println!("Snapgres is listening on http://{addr}/");
    match generated {
        Some(token) => println!("Admin token (shown once, keep it): {token}"),
        None if cfg.admin_token.is_some() => {
            println!("Admin token: the one in SNAPGRES_ADMIN_TOKEN")
        }
        None => println!(
            "Admin token: the one printed at first start (set SNAPGRES_ADMIN_TOKEN to choose one)"
        ),
    }
    tracing::info!(%addr, "listening");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)?;

    tracing::info!("shutting down: stopping workers and local instances");
    engine.shutdown();
    for w in workers {
        let _ = w.await;
    }
    let live = instance::Entity::find()
        .filter(instance::Column::State.is_in([
            InstanceState::Running,
            InstanceState::Creating,
            InstanceState::Deleting,
        ]))
        .filter(instance::Column::Platform.eq(platform.name()))
        .all(&db)
        .await
        .unwrap_or_default();
    for inst in &live {
        if let Err(e) = platform.stop_postgres(&workflows::spec_of(inst)).await {
            tracing::warn!(instance = %inst.name, error = %crate::tasks::error_chain(&e), "could not stop instance");
        }
    }
    Ok(())
}
