//! Creates `task`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Task {
    Table,
    Id,
    Kind,
    TargetId,
    Input,
    Context,
    State,
    Attempt,
    LeaseOwner,
    LeaseExpiresAt,
    Error,
    CreatedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Task::Table)
                .col(ColumnDef::new(Task::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(Task::Kind).string_len(32).not_null())
                .col(ColumnDef::new(Task::TargetId).uuid().null())
                .col(ColumnDef::new(Task::Input).json().not_null())
                .col(ColumnDef::new(Task::Context).json().not_null())
                .col(ColumnDef::new(Task::State).string_len(16).not_null())
                .col(ColumnDef::new(Task::Attempt).integer().not_null())
                .col(ColumnDef::new(Task::LeaseOwner).string_len(64).null())
                .col(
                    ColumnDef::new(Task::LeaseExpiresAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ColumnDef::new(Task::Error).text().null())
                .col(ColumnDef::new(Task::CreatedBy).string().null())
                .col(
                    ColumnDef::new(Task::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Task::StartedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(Task::FinishedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_task_state")
                .table(Task::Table)
                .col(Task::State)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_task_created_at")
                .table(Task::Table)
                .col(Task::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Task::Table).to_owned())
            .await
    }
}
