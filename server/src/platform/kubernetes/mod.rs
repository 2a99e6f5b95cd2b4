//! The Kubernetes platform's manifests: the templates in `templates/`, rendered into typed
//! k8s-openapi objects. (The kube-rs client that applies them and tracks the Jobs is the next
//! step of the Kubernetes work; the manifests are complete and validated offline already.)

pub mod render;

pub use render::{KubeSettings, Rendered};
