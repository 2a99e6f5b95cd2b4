//! Creates `image`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
#[allow(clippy::enum_variant_names)]
enum Image {
    Table,
    Id,
    Name,
    LiveName,
    Description,
    SourceInstanceId,
    SourceInstanceName,
    PostgresVersion,
    ImageType,
    StorageSizeGb,
    State,
    Store,
    Container,
    Path,
    Format,
    SizeBytes,
    Checksum,
    Databases,
    SourcePasswordEnc,
    Error,
    TaskId,
    CreatedAt,
    ReadyAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Image::Table)
                .col(ColumnDef::new(Image::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(Image::Name).string_len(63).not_null())
                .col(
                    ColumnDef::new(Image::LiveName)
                        .string_len(63)
                        .null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Image::Description).text().null())
                .col(ColumnDef::new(Image::SourceInstanceId).uuid().null())
                .col(
                    ColumnDef::new(Image::SourceInstanceName)
                        .string_len(63)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Image::PostgresVersion)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(Image::ImageType).string_len(16).not_null())
                .col(ColumnDef::new(Image::StorageSizeGb).integer().not_null())
                .col(ColumnDef::new(Image::State).string_len(16).not_null())
                .col(ColumnDef::new(Image::Store).string_len(16).not_null())
                .col(ColumnDef::new(Image::Container).string().not_null())
                .col(ColumnDef::new(Image::Path).string().not_null())
                .col(ColumnDef::new(Image::Format).string_len(32).not_null())
                .col(ColumnDef::new(Image::SizeBytes).big_integer().null())
                .col(ColumnDef::new(Image::Checksum).string_len(64).null())
                .col(ColumnDef::new(Image::Databases).json().not_null())
                .col(ColumnDef::new(Image::SourcePasswordEnc).text().not_null())
                .col(ColumnDef::new(Image::Error).text().null())
                .col(ColumnDef::new(Image::TaskId).uuid().null())
                .col(
                    ColumnDef::new(Image::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Image::ReadyAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_image_created_at")
                .table(Image::Table)
                .col(Image::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Image::Table).to_owned())
            .await
    }
}
