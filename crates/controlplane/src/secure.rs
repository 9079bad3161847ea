//! What keeps `serin up` safe to run on a shared machine: a private state
//! dir, private files, the `mappedImagesOnly` policy, and refusing to expose
//! unauthenticated flag evaluation. Small helpers, each called from one place
//! in `up.rs` or `api.rs`; `docs/security.md` describes the whole model.

use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use serin_spec::{Diagnostic, ManifestSet, Resource, Severity};

use crate::up::ServerConfig;

/// Creates `dir` (and parents) and makes it `0700`: the state dir holds the
/// admin token, webhook URLs and headers, stores and logs.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates (or truncates) a file readable and writable by this user only.
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to files it creates; an older file keeps its own.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Makes every file under `dir` `0600` and every folder `0700` (state dirs
/// written by older versions, and files such as redb stores created with the
/// process umask). Symbolic links are left alone.
pub fn lock_down(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
            lock_down(&path)?;
        } else if kind.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Whether `mappedImagesOnly` is in force: as configured, else on whenever
/// the API listens beyond loopback (a deployer token from another machine
/// must not mean running any program here).
pub fn mapped_images_only(config: &ServerConfig, api: SocketAddr) -> bool {
    config.mapped_images_only.unwrap_or(!api.ip().is_loopback())
}

/// `serin up` with `flags:` and no keys serves OFREP evaluation without
/// authentication on the API's address: like `serin flags serve`, only on
/// loopback.
pub fn check_flags_exposure(config: &ServerConfig, api: SocketAddr) -> anyhow::Result<()> {
    let Some(flags) = &config.flags else {
        return Ok(());
    };
    let has_keys = match &flags.keys {
        Some(p) => !serin_flags_server::KeyRing::from_path(p)
            .map_err(|e| anyhow::anyhow!("flags.keys: {e}"))?
            .is_empty(),
        None => false,
    };
    serin_flags_server::check_listen(api, has_keys).map_err(|e| {
        anyhow::anyhow!("flags: {e} (set flags.keys in serin.yaml, or a loopback api address)")
    })
}

/// Located diagnostics for the containers `images` cannot run: errors for
/// what its `mappedImagesOnly` policy refuses, warnings for images with no
/// `images:` entry and no `command:` (they would back off, never start).
pub fn policy_diagnostics(
    set: &ManifestSet,
    images: &serin_platform_local::ImageMap,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for doc in &set.documents {
        // (field path of the pod template, the template) for every pod
        // this document runs: a Rollout's, or each Experiment template's.
        let templates: Vec<(String, &serin_spec::PodTemplateSpec)> = match &doc.resource {
            Resource::Rollout(r) => r
                .spec
                .template
                .iter()
                .map(|t| ("spec.template".to_string(), t))
                .collect(),
            Resource::Deployment {
                rollout: Some(r), ..
            } => r
                .spec
                .template
                .iter()
                .map(|t| ("spec.template".to_string(), t))
                .collect(),
            Resource::Experiment(x) => x
                .spec
                .templates
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    t.template
                        .as_ref()
                        .map(|p| (format!("spec.templates[{i}].template"), p))
                })
                .collect(),
            _ => Vec::new(),
        };
        let file = set
            .files
            .get(doc.file)
            .map(|f| f.path.clone())
            .unwrap_or_default();
        for (at, template) in templates {
            for (i, c) in template.spec.containers.iter().enumerate() {
                let Some(reason) = images.policy_violation(c) else {
                    if let Some(image) = images.unmapped_image(c) {
                        let path = format!("{at}.spec.containers[{i}].image");
                        let loc = doc.locs.get(&path).map(|n| n.value).unwrap_or_default();
                        out.push(Diagnostic {
                        severity: Severity::Warning,
                        code: "unmapped-image".into(),
                        file: file.clone(),
                        line: loc.line,
                        column: loc.column,
                        path,
                        message: format!(
                            "container {:?}: image {image:?} has no entry in serin.yaml's images:, so it cannot run on this machine (the rollout backs off until it has one)",
                            c.name
                        ),
                        hint: "add an images: entry for it (image name → command), or give the container a command:".into(),
                        offset: loc.offset,
                        length: loc.len,
                    });
                    }
                    continue;
                };
                let field = if c.command.is_empty() {
                    "image"
                } else {
                    "command"
                };
                let path = format!("{at}.spec.containers[{i}].{field}");
                let loc = doc.locs.get(&path).map(|n| n.value).unwrap_or_default();
                out.push(Diagnostic {
                severity: Severity::Error,
                code: "command-not-allowed".into(),
                file: file.clone(),
                line: loc.line,
                column: loc.column,
                path,
                message: format!("container {:?} {reason}", c.name),
                hint: "serin.yaml sets mappedImagesOnly (the default when the API listens beyond loopback): use an image with an images: entry and no command:".into(),
                offset: loc.offset,
                length: loc.len,
            });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn policy_defaults_on_beyond_loopback() {
        let mut c = ServerConfig::default();
        assert!(!mapped_images_only(&c, addr("127.0.0.1:1")));
        assert!(!mapped_images_only(&c, addr("[::1]:1")));
        assert!(mapped_images_only(&c, addr("0.0.0.0:1")));
        assert!(mapped_images_only(&c, addr("192.168.1.5:1")));
        c.mapped_images_only = Some(false);
        assert!(!mapped_images_only(&c, addr("0.0.0.0:1")));
        c.mapped_images_only = Some(true);
        assert!(mapped_images_only(&c, addr("127.0.0.1:1")));
    }

    #[test]
    fn flags_without_keys_stay_on_loopback() {
        let mut c = ServerConfig::default();
        assert!(
            check_flags_exposure(&c, addr("0.0.0.0:1")).is_ok(),
            "no flags"
        );
        c.flags = Some(crate::up::FlagsConfig::default());
        assert!(check_flags_exposure(&c, addr("127.0.0.1:1")).is_ok());
        let e = check_flags_exposure(&c, addr("0.0.0.0:1")).expect_err("refused");
        assert!(e.to_string().contains("without API keys"), "{e}");
    }

    #[test]
    fn policy_errors_are_located() {
        let mut set = ManifestSet::new();
        set.add_source(
            "r.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: r\nspec:\n  selector:\n    matchLabels: {app: r}\n  template:\n    metadata:\n      labels: {app: r}\n    spec:\n      containers:\n        - name: app\n          image: app:1\n          command: [sh, -c, id]\n  strategy:\n    canary: {}\n",
        );
        let images: serin_platform_local::ImageMap =
            serde_json::from_value(serde_json::json!({"app": {"command": ["/bin/app"]}}))
                .expect("map");
        assert!(policy_diagnostics(&set, &images).is_empty(), "policy off");
        let unmapped: serin_platform_local::ImageMap =
            serde_json::from_value(serde_json::json!({"other": {"command": ["/bin/other"]}}))
                .expect("map");
        assert!(
            policy_diagnostics(&set, &unmapped).is_empty(),
            "a container with its own command needs no mapping"
        );
        let d = policy_diagnostics(&set, &images.with_mapped_images_only(true));
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].line, d[0].path.as_str()),
            (15, "spec.template.spec.containers[0].command")
        );
    }

    #[test]
    fn unmapped_images_are_located_warnings() {
        let mut set = ManifestSet::new();
        set.add_source(
            "r.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: r\nspec:\n  selector:\n    matchLabels: {app: r}\n  template:\n    metadata:\n      labels: {app: r}\n    spec:\n      containers:\n        - name: app\n          image: unknown:1\n  strategy:\n    canary: {}\n",
        );
        let images: serin_platform_local::ImageMap =
            serde_json::from_value(serde_json::json!({"app": {"command": ["/bin/app"]}}))
                .expect("map");
        let d = policy_diagnostics(&set, &images);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (
                d[0].severity,
                d[0].code.as_str(),
                d[0].line,
                d[0].path.as_str()
            ),
            (
                Severity::Warning,
                "unmapped-image",
                14,
                "spec.template.spec.containers[0].image"
            )
        );
        let mapped: serin_platform_local::ImageMap =
            serde_json::from_value(serde_json::json!({"unknown": {"command": ["/bin/app"]}}))
                .expect("map");
        assert!(policy_diagnostics(&set, &mapped).is_empty());
    }
}
