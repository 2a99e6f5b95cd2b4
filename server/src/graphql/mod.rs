//! The GraphQL API: schema, thin resolvers over `service`, API types, subscriptions.

mod mutation;
mod query;
pub mod schema;
mod subscription;
pub mod types;

use async_graphql::{Context, ErrorExtensions};

use crate::error::Error;
use crate::service::{Actor, Services};

/// Maps a service error to a GraphQL error with a stable `extensions.code` (and `field`).
pub fn gql_error(e: Error) -> async_graphql::Error {
    if matches!(e, Error::Database(_) | Error::Internal { .. }) {
        tracing::error!(error = %crate::tasks::error_chain(&e), "request failed");
    }
    let code = e.code();
    let field = e.field().map(str::to_owned);
    async_graphql::Error::new(e.public_message()).extend_with(|_, ext| {
        ext.set("code", code);
        if let Some(f) = &field {
            ext.set("field", f.as_str());
        }
    })
}

/// The services and the authenticated actor of a request.
pub(crate) fn parts<'a>(ctx: &Context<'a>) -> async_graphql::Result<(&'a Services, &'a Actor)> {
    let svc = ctx.data::<Services>().map_err(|_| {
        gql_error(Error::Internal {
            context: "services missing from the schema".into(),
            source: None,
        })
    })?;
    let actor = ctx
        .data::<Actor>()
        .map_err(|_| gql_error(Error::Unauthenticated))?;
    Ok((svc, actor))
}
