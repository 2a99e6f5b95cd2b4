//! Snapgres server: API, console, task engine and platforms, as a library the binary and the
//! tests share.

pub mod config;
pub mod db;
pub mod error;
pub mod process;
pub mod secrets;
pub mod storage;
pub mod tasks;
pub mod platform;
pub mod workflows;
pub mod service;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod rest;
pub mod app;
