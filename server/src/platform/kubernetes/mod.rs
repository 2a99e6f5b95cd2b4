//! The Kubernetes platform: the templates in `templates/` rendered into typed k8s-openapi
//! objects (`render`), applied and tracked with kube-rs (`client`).

pub mod client;
pub mod render;

pub use client::{KubernetesPlatform, Waits};
pub use render::{KubeSettings, Rendered};
