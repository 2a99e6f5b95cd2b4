//! Queries: thin resolvers over `service`.

use async_graphql::connection::{
    Connection, DefaultConnectionName, DefaultEdgeName, Edge, EmptyFields, EnableNodesField,
};
use async_graphql::{Context, Object};
use uuid::Uuid;

use super::types::{Image, ImageState, Instance, InstanceState, Task, TaskState};
use super::{gql_error, parts};
use crate::service::{encode_cursor, Page};

/// A Relay connection with the `nodes` shortcut.
pub type List<T> = Connection<
    String,
    T,
    EmptyFields,
    EmptyFields,
    DefaultConnectionName,
    DefaultEdgeName,
    EnableNodesField,
>;

fn to_connection<M, T>(
    page: Page<M>,
    had_cursor: bool,
    key: impl Fn(&M) -> (chrono::DateTime<chrono::Utc>, Uuid),
    wrap: impl Fn(M) -> T,
) -> List<T>
where
    T: async_graphql::OutputType,
{
    let mut c = List::new(had_cursor, page.has_next);
    for m in page.items {
        let (at, id) = key(&m);
        c.edges.push(Edge::new(encode_cursor(at, id), wrap(m)));
    }
    c
}

/// Root query.
pub struct Query;

#[Object]
impl Query {
    /// Instances, newest first.
    async fn instances(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        state: Option<InstanceState>,
    ) -> async_graphql::Result<List<Instance>> {
        let (svc, _) = parts(ctx)?;
        let page = svc
            .instances(first, after.as_deref(), state.map(Into::into))
            .await
            .map_err(gql_error)?;
        Ok(to_connection(
            page,
            after.is_some(),
            |m| (m.created_at, m.id),
            Instance,
        ))
    }

    /// One instance.
    async fn instance(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> async_graphql::Result<Option<Instance>> {
        let (svc, _) = parts(ctx)?;
        Ok(svc.instance(id).await.map_err(gql_error)?.map(Instance))
    }

    /// Images, newest first.
    async fn images(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        state: Option<ImageState>,
    ) -> async_graphql::Result<List<Image>> {
        let (svc, _) = parts(ctx)?;
        let page = svc
            .images(first, after.as_deref(), state.map(Into::into))
            .await
            .map_err(gql_error)?;
        Ok(to_connection(
            page,
            after.is_some(),
            |m| (m.created_at, m.id),
            Image,
        ))
    }

    /// One image.
    async fn image(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<Image>> {
        let (svc, _) = parts(ctx)?;
        Ok(svc.image(id).await.map_err(gql_error)?.map(Image))
    }

    /// Tasks, newest first.
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        state: Option<TaskState>,
    ) -> async_graphql::Result<List<Task>> {
        let (svc, _) = parts(ctx)?;
        let page = svc
            .tasks(first, after.as_deref(), state.map(Into::into))
            .await
            .map_err(gql_error)?;
        Ok(to_connection(
            page,
            after.is_some(),
            |m| (m.created_at, m.id),
            Task,
        ))
    }

    /// One task.
    async fn task(&self, ctx: &Context<'_>, id: Uuid) -> async_graphql::Result<Option<Task>> {
        let (svc, _) = parts(ctx)?;
        Ok(svc.task(id).await.map_err(gql_error)?.map(Task))
    }
}
