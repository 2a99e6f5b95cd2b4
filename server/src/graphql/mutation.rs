//! Mutations: thin resolvers over `service`.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use uuid::Uuid;

use super::types::{Image, ImageType, Instance, Task};
use super::{gql_error, parts};
use crate::secrets::Password;
use crate::service::images::CreateImage;
use crate::service::instances::CreateInstance;

/// Input of `createInstance`; with `sourceImageId` it is a restore.
#[derive(InputObject)]
pub struct CreateInstanceInput {
    pub name: String,
    /// Superuser password of a fresh instance (8–128 characters). Ignored on restore.
    #[graphql(secret)]
    pub password: Option<String>,
    pub dns_label: Option<String>,
    pub postgres_version: Option<String>,
    pub storage_size_gb: Option<i32>,
    pub image_type: Option<ImageType>,
    pub source_image_id: Option<Uuid>,
    pub runtime_image_id: Option<Uuid>,
    pub image_override: Option<String>,
}

/// Result of `createInstance`.
#[derive(SimpleObject)]
pub struct CreateInstancePayload {
    pub instance: Instance,
    pub task: Task,
    /// What the server did differently from what was asked (e.g. an ignored password).
    pub warnings: Vec<String>,
}

/// Input of `createImage`.
#[derive(InputObject)]
pub struct CreateImageInput {
    pub name: String,
    pub instance_id: Uuid,
    pub description: Option<String>,
}

/// Result of `createImage`.
#[derive(SimpleObject)]
pub struct CreateImagePayload {
    pub image: Image,
    pub task: Task,
}

/// Root mutation.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates an instance; with `sourceImageId`, restores that image into a new instance.
    async fn create_instance(
        &self,
        ctx: &Context<'_>,
        input: CreateInstanceInput,
    ) -> async_graphql::Result<CreateInstancePayload> {
        let (svc, actor) = parts(ctx)?;
        let req = CreateInstance {
            name: input.name,
            password: input.password.map(Password::new),
            dns_label: input.dns_label,
            postgres_version: input.postgres_version,
            storage_size_gb: input.storage_size_gb,
            image_type: input.image_type.map(Into::into),
            source_image_id: input.source_image_id,
            runtime_image_id: input.runtime_image_id,
            image_override: input.image_override,
        };
        let c = svc.create_instance(actor, req).await.map_err(gql_error)?;
        Ok(CreateInstancePayload {
            instance: Instance(c.instance),
            task: Task(c.task),
            warnings: c.warnings,
        })
    }

    /// Takes an image of a running instance.
    async fn create_image(
        &self,
        ctx: &Context<'_>,
        input: CreateImageInput,
    ) -> async_graphql::Result<CreateImagePayload> {
        let (svc, actor) = parts(ctx)?;
        let (image, task) = svc
            .create_image(
                actor,
                CreateImage {
                    name: input.name,
                    instance_id: input.instance_id,
                    description: input.description,
                },
            )
            .await
            .map_err(gql_error)?;
        Ok(CreateImagePayload {
            image: Image(image),
            task: Task(task),
        })
    }

    /// Deletes an instance and everything it has.
    async fn delete_instance(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Task> {
        let (svc, actor) = parts(ctx)?;
        Ok(Task(
            svc.delete_instance(actor, id).await.map_err(gql_error)?,
        ))
    }

    /// Deletes an image's objects, then the image.
    async fn delete_image(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Task> {
        let (svc, actor) = parts(ctx)?;
        Ok(Task(svc.delete_image(actor, id).await.map_err(gql_error)?))
    }

    /// Cancels a queued or running task; its cleanup runs.
    async fn cancel_task(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Task> {
        let (svc, actor) = parts(ctx)?;
        Ok(Task(svc.cancel_task(actor, id).await.map_err(gql_error)?))
    }
}
