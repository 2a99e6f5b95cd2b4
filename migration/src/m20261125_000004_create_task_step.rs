//! Creates `task_step`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TaskStep {
    Table,
    Id,
    TaskId,
    Position,
    Name,
    State,
    Attempt,
    StartedAt,
    FinishedAt,
    Done,
    Total,
    Unit,
    Message,
    Error,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(TaskStep::Table)
                .col(ColumnDef::new(TaskStep::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(TaskStep::TaskId).uuid().not_null())
                .col(ColumnDef::new(TaskStep::Position).integer().not_null())
                .col(ColumnDef::new(TaskStep::Name).string_len(64).not_null())
                .col(ColumnDef::new(TaskStep::State).string_len(16).not_null())
                .col(ColumnDef::new(TaskStep::Attempt).integer().not_null())
                .col(
                    ColumnDef::new(TaskStep::StartedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(TaskStep::FinishedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ColumnDef::new(TaskStep::Done).double().null())
                .col(ColumnDef::new(TaskStep::Total).double().null())
                .col(ColumnDef::new(TaskStep::Unit).string_len(16).null())
                .col(ColumnDef::new(TaskStep::Message).text().null())
                .col(ColumnDef::new(TaskStep::Error).text().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_task_step_task_position")
                .table(TaskStep::Table)
                .col(TaskStep::TaskId)
                .col(TaskStep::Position)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(TaskStep::Table).to_owned())
            .await
    }
}
