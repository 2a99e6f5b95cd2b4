//! `snapgres k8s manifests --example DIR` writes every manifest the Kubernetes platform would
//! apply (fresh instance, backup, restore) and the server's own; each passes
//! `kubernetes-validate -k 1.33.0 --strict` offline, and none holds a password in plain text.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use snapgres_e2e::*;

fn kubernetes_validate() -> PathBuf {
    if let Ok(p) = std::env::var("SNAPGRES_KUBERNETES_VALIDATE") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(
        std::env::var("SNAPGRES_TOOLS_DIR")
            .unwrap_or_else(|_| format!("{home}/.cache/snapgres-tools")),
    )
    .join("kv/bin/kubernetes-validate");
    assert!(
        p.exists(),
        "kubernetes-validate not found at {}: run scripts/test (it installs it)",
        p.display()
    );
    p
}

#[test]
fn example_manifests_validate_strictly_and_hold_no_secrets() {
    let dir = temp_dir();
    let out = Command::new(snapgres_bin())
        .args(["k8s", "manifests", "--example"])
        .arg(dir.path())
        .env("SNAPGRES_K8S_STORAGE_CLASS", "managed-csi-premium")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<PathBuf> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(files.len(), 17, "{files:?}");
    for kind in [
        "fresh/statefulset.yaml",
        "fresh/service.yaml",
        "backup/backup-job.yaml",
        "restore/restore-job.yaml",
        "server/role.yaml",
        "server/serviceaccount.yaml",
    ] {
        assert!(files.iter().any(|f| f.ends_with(kind)), "missing {kind}");
    }
    let v = Command::new(kubernetes_validate())
        .args(["-k", "1.33.0", "--strict"])
        .args(&files)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(v.status.success(), "kubernetes-validate failed:\n{report}");
    assert_eq!(
        report.matches("passed for resource").count(),
        files.len(),
        "{report}"
    );
    // The validator really checks: a misspelt field in a copy of a manifest is rejected.
    let statefulset = files
        .iter()
        .find(|f| f.ends_with("fresh/statefulset.yaml"))
        .unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(statefulset)
            .unwrap()
            .replace("serviceName:", "servicName:"),
    )
    .unwrap();
    let v = Command::new(kubernetes_validate())
        .args(["-k", "1.33.0", "--strict"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !v.status.success(),
        "a misspelt field must fail strict validation"
    );
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(
            !text.contains("example-only-password"),
            "{} holds the password in plain text",
            f.display()
        );
        assert!(!text.contains("sgp_"), "{} holds a token", f.display());
    }
    let backup = std::fs::read_to_string(
        files
            .iter()
            .find(|f| f.ends_with("backup-job.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        backup.contains("azcopy login --login-type=workload") && !backup.contains("--identity")
    );
    let pvc = std::fs::read_to_string(
        files
            .iter()
            .find(|f| f.ends_with("fresh/pvc.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert!(pvc.contains("managed-csi-premium"));
}
