//! Builds the schema (no side effects: data is handed in) and prints its SDL.

use async_graphql::Schema;

use super::mutation::Mutation;
use super::query::Query;
use super::subscription::Subscription;
use crate::service::Services;

/// The schema type.
pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Builds the schema over the services, with depth and complexity limits.
pub fn build(services: Services) -> AppSchema {
    Schema::build(Query, Mutation, Subscription).data(services).limit_depth(12).limit_complexity(5000).finish()
}

/// The SDL (what `schema.graphql` holds).
pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription).finish().sdl()
}
