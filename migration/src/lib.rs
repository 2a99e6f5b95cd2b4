//! Schema migrations for the Snapgres database (SQLite by default, PostgreSQL in production).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_instance;
mod m20261125_000002_create_image;
mod m20261125_000003_create_task;
mod m20261125_000004_create_task_step;
mod m20261125_000005_create_task_log;
mod m20261125_000006_create_api_token;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_instance::Migration),
            Box::new(m20261125_000002_create_image::Migration),
            Box::new(m20261125_000003_create_task::Migration),
            Box::new(m20261125_000004_create_task_step::Migration),
            Box::new(m20261125_000005_create_task_log::Migration),
            Box::new(m20261125_000006_create_api_token::Migration),
        ]
    }
}
