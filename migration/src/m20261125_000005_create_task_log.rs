//! Creates `task_log`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TaskLog {
    Table,
    Id,
    TaskId,
    At,
    Level,
    Message,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(TaskLog::Table)
                .col(
                    ColumnDef::new(TaskLog::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(TaskLog::TaskId).uuid().not_null())
                .col(
                    ColumnDef::new(TaskLog::At)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(TaskLog::Level).string_len(8).not_null())
                .col(ColumnDef::new(TaskLog::Message).text().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_task_log_task")
                .table(TaskLog::Table)
                .col(TaskLog::TaskId)
                .col(TaskLog::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(TaskLog::Table).to_owned())
            .await
    }
}
