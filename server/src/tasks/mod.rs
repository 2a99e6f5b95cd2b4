//! The durable task engine: tasks are ordered lists of named steps, claimed by workers under a
//! lease kept alive by a heartbeat, with every write fenced on that lease; steps retry per their
//! policy, publish progress and log lines, and a cancelled or failed task runs its cleanup.

mod engine;
mod events;
mod fence;
mod step;

pub use engine::{Engine, EngineConfig, EngineError};
pub use events::{EventBus, TaskEvent};
pub use step::{
    error_chain, Outcome, ResultExt, RetryPolicy, StepCtx, StepDef, StepError, Workflow,
};
