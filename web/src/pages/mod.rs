//! One module per page.

pub mod images;
pub mod instances;
pub mod new_instance;
pub mod restore;
pub mod signin;
pub mod task;
pub mod tasks;
