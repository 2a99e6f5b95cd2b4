//! Creates `instance`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Instance {
    Table,
    Id,
    Name,
    LiveName,
    K8sName,
    DnsLabel,
    LiveDnsLabel,
    Namespace,
    Platform,
    PostgresVersion,
    ImageType,
    RuntimeImage,
    StorageSizeGb,
    State,
    Host,
    Port,
    SourceImageId,
    PasswordEnc,
    Labels,
    Error,
    TaskId,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Instance::Table)
                .col(ColumnDef::new(Instance::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(Instance::Name).string_len(63).not_null())
                .col(
                    ColumnDef::new(Instance::LiveName)
                        .string_len(63)
                        .null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Instance::K8sName).string_len(63).not_null())
                .col(ColumnDef::new(Instance::DnsLabel).string_len(63).not_null())
                .col(
                    ColumnDef::new(Instance::LiveDnsLabel)
                        .string_len(63)
                        .null()
                        .unique_key(),
                )
                .col(
                    ColumnDef::new(Instance::Namespace)
                        .string_len(63)
                        .not_null(),
                )
                .col(ColumnDef::new(Instance::Platform).string_len(16).not_null())
                .col(
                    ColumnDef::new(Instance::PostgresVersion)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Instance::ImageType)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(Instance::RuntimeImage).string().null())
                .col(ColumnDef::new(Instance::StorageSizeGb).integer().not_null())
                .col(ColumnDef::new(Instance::State).string_len(16).not_null())
                .col(ColumnDef::new(Instance::Host).string().null())
                .col(ColumnDef::new(Instance::Port).integer().null())
                .col(ColumnDef::new(Instance::SourceImageId).uuid().null())
                .col(ColumnDef::new(Instance::PasswordEnc).text().null())
                .col(ColumnDef::new(Instance::Labels).json().not_null())
                .col(ColumnDef::new(Instance::Error).text().null())
                .col(ColumnDef::new(Instance::TaskId).uuid().null())
                .col(
                    ColumnDef::new(Instance::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Instance::UpdatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_instance_created_at")
                .table(Instance::Table)
                .col(Instance::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Instance::Table).to_owned())
            .await
    }
}
