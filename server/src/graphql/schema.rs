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
    Schema::build(Query, Mutation, Subscription)
        .data(services)
        .limit_depth(12)
        .limit_complexity(5000)
        .finish()
}

/// The SDL (what `schema.graphql` holds).
pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription).finish().sdl()
}

#[cfg(test)]
mod tests {
    /// The committed `schema.graphql` is what the server serves; regenerate it with
    /// `cargo run -p snapgres -- schema > schema.graphql`.
    #[test]
    fn committed_schema_matches() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema.graphql");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let served = super::sdl();
        assert!(
            committed == served,
            "schema.graphql drifted from the served schema; regenerate it"
        );
    }

    /// The names internal tools rely on (SPEC's contract) are present.
    #[test]
    fn contract_names() {
        let sdl = super::sdl();
        for needle in [
            "createInstance(input: CreateInstanceInput!): CreateInstancePayload!",
            "createImage(input: CreateImageInput!): CreateImagePayload!",
            "deleteInstance(id: UUID!): Task!",
            "deleteImage(id: UUID!): Task!",
            "cancelTask(id: UUID!): Task!",
            "taskProgress(taskId: UUID!): TaskEvent!",
            "taskUpdates: TaskEvent!",
            "instances(first: Int, after: String, state: InstanceState): InstanceConnection!",
            "images(first: Int, after: String, state: ImageState): ImageConnection!",
            "tasks(first: Int, after: String, state: TaskState): TaskConnection!",
            "logs(last: Int = 100): [TaskLog!]!",
            "enum ImageType {\n\tSTOCK\n\tPG_DURABLE\n}",
            "type Connection {",
            "warnings: [String!]!",
        ] {
            assert!(sdl.contains(needle), "missing from the schema: {needle}");
        }
    }
}
