//! Connecting to the CMS database (SQLite by default, PostgreSQL in production) and migrating it.

use std::str::FromStr;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, SqlxSqliteConnector};

use crate::config::SecretString;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid database URL")]
    BadUrl(#[source] sea_orm::sqlx::Error),
    #[error("connecting to the database")]
    Connect(#[source] DbErr),
    #[error("connecting to the SQLite database")]
    Sqlite(#[source] sea_orm::sqlx::Error),
    #[error("applying migrations")]
    Migrate(#[source] DbErr),
}

/// Connects. SQLite gets WAL mode and a busy timeout so several workers can write.
pub async fn connect(url: &SecretString) -> Result<DatabaseConnection, Error> {
    let url = url.expose();
    if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(Error::BadUrl)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(Error::Sqlite)?;
        Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
    } else {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .max_connections(16)
            .connect_timeout(Duration::from_secs(10));
        Database::connect(opts).await.map_err(Error::Connect)
    }
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), Error> {
    Migrator::up(db, None).await.map_err(Error::Migrate)
}

/// True when every migration is applied (for `/readyz`).
pub async fn is_migrated(db: &DatabaseConnection) -> bool {
    matches!(Migrator::get_pending_migrations(db).await, Ok(p) if p.is_empty())
}
