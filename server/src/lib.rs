//! Snapgres server: API, console, task engine and platforms, as a library the binary and the
//! tests share.

pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod platform;
pub mod process;
pub mod rest;
pub mod secrets;
pub mod service;
pub mod storage;
pub mod tasks;
pub mod workflows;
