//! `images:` — how an image reference becomes a local command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serin_spec::Container;

use crate::PlatformError;

/// How one image runs locally (one entry of `images:` in serin.yaml).
///
/// `command` is the entrypoint, `args` the default arguments (Docker's
/// `ENTRYPOINT`/`CMD`); a container's own `command`/`args` override them as
/// Kubernetes does. `{image}`, `{tag}`, `{port}` and `{pod}` are substituted in
/// `command`, `args` and `env` values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageCommand {
    /// Entrypoint (program and leading arguments).
    #[serde(default)]
    pub command: Vec<String>,
    /// Default arguments, replaced by the container's `args` when it has any.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment, below the container's own `env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (relative paths resolve against the map's base
    /// directory). Without it each replica runs in its own directory.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

/// The `images:` map: image name (without tag) → [`ImageCommand`].
///
/// Lookup takes the longest key that equals the image name, is a trailing
/// path of it (`argoproj/rollouts-demo` matches `docker.io/argoproj/rollouts-demo`)
/// or a leading path of it (`myregistry` matches `myregistry/api-server`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageMap {
    entries: BTreeMap<String, ImageCommand>,
    #[serde(skip)]
    base_dir: Option<PathBuf>,
    #[serde(skip)]
    mapped_only: bool,
}

/// An image reference split into name and tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Name without tag or digest (`myregistry/api-server`).
    pub name: String,
    /// Tag, else the digest, else `latest`.
    pub tag: String,
}

impl ImageRef {
    /// Splits `registry:5000/name:tag@sha256:...`.
    pub fn parse(image: &str) -> ImageRef {
        let (rest, digest) = match image.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (image, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let tag = tag.filter(|t| !t.is_empty()).or(digest).unwrap_or("latest");
        ImageRef {
            name: name.to_string(),
            tag: tag.to_string(),
        }
    }
}

/// Values substituted into mapped commands.
pub(crate) struct Vars<'a> {
    pub image: &'a str,
    pub tag: &'a str,
    pub port: u16,
    pub pod: &'a str,
}

impl Vars<'_> {
    fn apply(&self, s: &str) -> String {
        s.replace("{image}", self.image)
            .replace("{tag}", self.tag)
            .replace("{port}", &self.port.to_string())
            .replace("{pod}", self.pod)
    }
}

/// A resolved command line, before the platform's own env is added.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

impl ImageMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one entry.
    pub fn insert(&mut self, image: impl Into<String>, command: ImageCommand) -> &mut Self {
        self.entries.insert(image.into(), command);
        self
    }

    /// Sets the directory relative `workdir`s resolve against (the directory
    /// of serin.yaml). Defaults to the process's current directory.
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Allows only mapped images run by their mapped entrypoint: a container
    /// `command:` (which would run any program) or an image without an entry
    /// is refused with [`PlatformError::CommandNotAllowed`]. `args:` still
    /// reach the mapped entrypoint.
    pub fn with_mapped_images_only(mut self, on: bool) -> Self {
        self.mapped_only = on;
        self
    }

    /// Whether [`ImageMap::with_mapped_images_only`] is in force.
    pub fn mapped_images_only(&self) -> bool {
        self.mapped_only
    }

    /// Why a container may not run under [`ImageMap::with_mapped_images_only`]
    /// (`None`: it may, or the policy is off).
    pub fn policy_violation(&self, c: &Container) -> Option<String> {
        if !self.mapped_only {
            return None;
        }
        if !c.command.is_empty() {
            return Some(format!(
                "sets its own command {:?}; only the images: mappings may choose programs",
                c.command
            ));
        }
        let image = c.image.as_deref().unwrap_or_default();
        if self.lookup(&ImageRef::parse(image).name).is_none() {
            return Some(format!("image {image:?} has no entry in images:"));
        }
        None
    }

    /// The image of a container that sets no `command:` and has no entry in
    /// `images:` — it cannot run on this machine (the platform backs off, as
    /// Kubernetes does on ImagePullBackOff).
    pub fn unmapped_image<'c>(&self, c: &'c Container) -> Option<&'c str> {
        let image = c.image.as_deref().unwrap_or_default();
        (c.command.is_empty() && self.lookup(&ImageRef::parse(image).name).is_none())
            .then_some(image)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for an image name (without tag), longest match first.
    pub fn lookup(&self, name: &str) -> Option<(&str, &ImageCommand)> {
        self.entries
            .iter()
            .filter(|(key, _)| {
                let key = key.as_str();
                name == key
                    || name
                        .strip_suffix(key)
                        .is_some_and(|head| head.ends_with('/'))
                    || name
                        .strip_prefix(key)
                        .is_some_and(|tail| tail.starts_with('/'))
            })
            .max_by_key(|(key, _)| key.len())
            .map(|(k, v)| (k.as_str(), v))
    }

    fn resolve_dir(&self, dir: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if dir.is_relative() => base.join(dir),
            _ => dir.to_path_buf(),
        }
    }

    /// Entrypoint + args + env for a container, with Kubernetes override rules.
    pub(crate) fn resolve(&self, c: &Container, vars: &Vars<'_>) -> Result<Launch, PlatformError> {
        if let Some(reason) = self.policy_violation(c) {
            return Err(PlatformError::CommandNotAllowed {
                container: c.name.clone(),
                reason,
            });
        }
        let mapped = c
            .image
            .as_deref()
            .and_then(|img| self.lookup(&ImageRef::parse(img).name))
            .map(|(_, cmd)| cmd);
        let (entry, default_args, mut env, workdir) = match mapped {
            Some(m) => (
                m.command.iter().map(|s| vars.apply(s)).collect::<Vec<_>>(),
                m.args.iter().map(|s| vars.apply(s)).collect::<Vec<_>>(),
                m.env
                    .iter()
                    .map(|(k, v)| (k.clone(), vars.apply(v)))
                    .collect::<Vec<_>>(),
                m.workdir.as_deref().map(|d| self.resolve_dir(d)),
            ),
            None if !c.command.is_empty() => (Vec::new(), Vec::new(), Vec::new(), None),
            None => {
                return Err(PlatformError::ImageNotMapped {
                    container: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                });
            }
        };
        // Container env with Kubernetes' $(VAR) expansion against earlier vars.
        for var in &c.env {
            match &var.value {
                Some(v) => {
                    let expanded = expand_k8s(v, &env);
                    env.retain(|(k, _)| k != &var.name);
                    env.push((var.name.clone(), expanded));
                }
                None if var.value_from.is_some() => tracing::warn!(
                    container = %c.name,
                    var = %var.name,
                    "env valueFrom is not supported by the local platform; variable skipped"
                ),
                None => {
                    env.retain(|(k, _)| k != &var.name);
                    env.push((var.name.clone(), String::new()));
                }
            }
        }
        let expand =
            |v: &Vec<String>| -> Vec<String> { v.iter().map(|s| expand_k8s(s, &env)).collect() };
        let (entry, args) = if !c.command.is_empty() {
            (expand(&c.command), expand(&c.args))
        } else if !c.args.is_empty() {
            (entry, expand(&c.args))
        } else {
            (entry, default_args)
        };
        let argv: Vec<String> = entry.into_iter().chain(args).collect();
        if argv.is_empty() {
            return Err(PlatformError::EmptyCommand {
                container: c.name.clone(),
            });
        }
        let cwd = c
            .working_dir
            .as_deref()
            .map(|d| self.resolve_dir(Path::new(d)))
            .or(workdir);
        Ok(Launch { argv, env, cwd })
    }
}

/// Kubernetes `$(VAR)` expansion: known variables are replaced, `$$` is a
/// literal `$`, unknown references stay as written.
pub(crate) fn expand_k8s(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_image_refs() {
        let r = ImageRef::parse("myregistry/api-server:v1.2.3");
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("myregistry/api-server", "v1.2.3")
        );
        let r = ImageRef::parse("localhost:5000/app");
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("localhost:5000/app", "latest")
        );
        let r = ImageRef::parse("app@sha256:abc");
        assert_eq!((r.name.as_str(), r.tag.as_str()), ("app", "sha256:abc"));
    }

    #[test]
    fn longest_match_wins() {
        let mut m = ImageMap::new();
        m.insert(
            "myregistry",
            ImageCommand {
                command: vec!["a".into()],
                ..Default::default()
            },
        );
        m.insert(
            "myregistry/api-server",
            ImageCommand {
                command: vec!["b".into()],
                ..Default::default()
            },
        );
        m.insert(
            "argoproj/rollouts-demo",
            ImageCommand {
                command: vec!["c".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            m.lookup("myregistry/api-server").map(|x| x.0),
            Some("myregistry/api-server")
        );
        assert_eq!(
            m.lookup("myregistry/other").map(|x| x.0),
            Some("myregistry")
        );
        assert_eq!(
            m.lookup("docker.io/argoproj/rollouts-demo").map(|x| x.0),
            Some("argoproj/rollouts-demo")
        );
        assert_eq!(m.lookup("myregistryx/y"), None);
    }

    #[test]
    fn container_command_overrides_and_tag_substitutes() {
        let m: ImageMap = serde_json::from_value(serde_json::json!({
            "argoproj/rollouts-demo": {"command": ["/bin/demo"], "args": ["--version", "{tag}"], "env": {"X": "{image}"}}
        }))
        .expect("valid map");
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "image": "argoproj/rollouts-demo:blue",
            "env": [{"name": "Y", "value": "$(X)-y"}]
        }))
        .expect("valid container");
        let vars = Vars {
            image: "argoproj/rollouts-demo:blue",
            tag: "blue",
            port: 1,
            pod: "p",
        };
        let l = m.resolve(&c, &vars).expect("resolves");
        assert_eq!(l.argv, ["/bin/demo", "--version", "blue"]);
        assert!(
            l.env
                .contains(&("Y".into(), "argoproj/rollouts-demo:blue-y".into()))
        );
        let c2: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "image": "argoproj/rollouts-demo:blue", "args": ["--x"]
        }))
        .expect("valid container");
        assert_eq!(
            m.resolve(&c2, &vars).expect("resolves").argv,
            ["/bin/demo", "--x"]
        );
        let c3: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "image": "unknown/image"
        }))
        .expect("valid container");
        assert!(matches!(
            m.resolve(&c3, &vars),
            Err(PlatformError::ImageNotMapped { .. })
        ));
    }

    #[test]
    fn mapped_images_only_refuses_own_commands_and_unmapped_images() {
        let open: ImageMap = serde_json::from_value(serde_json::json!({
            "app": {"command": ["/bin/app"]}
        }))
        .expect("valid map");
        let strict = open.clone().with_mapped_images_only(true);
        let vars = Vars {
            image: "app:1",
            tag: "1",
            port: 1,
            pod: "p",
        };
        let container = |v: serde_json::Value| -> Container {
            serde_json::from_value(v).expect("valid container")
        };
        // A deployer's own command: runs without the policy, refused with it.
        let own = container(serde_json::json!({
            "name": "c", "image": "app:1", "command": ["sh", "-c", "cat ~/.ssh/id_rsa"]
        }));
        assert_eq!(open.resolve(&own, &vars).expect("allowed").argv[0], "sh");
        let err = strict.resolve(&own, &vars).expect_err("refused");
        assert!(matches!(err, PlatformError::CommandNotAllowed { .. }));
        assert!(err.to_string().contains("mappedImagesOnly"), "{err}");
        // An unmapped image with a command: the same.
        let unmapped = container(serde_json::json!({
            "name": "c", "image": "evil/x", "command": ["/bin/true"]
        }));
        assert!(open.resolve(&unmapped, &vars).is_ok());
        assert!(strict.policy_violation(&unmapped).is_some());
        // A mapped image with args only runs the mapped entrypoint.
        let args = container(serde_json::json!({"name": "c", "image": "app:1", "args": ["--x"]}));
        assert_eq!(strict.policy_violation(&args), None);
        assert_eq!(
            strict.resolve(&args, &vars).expect("allowed").argv,
            ["/bin/app", "--x"]
        );
    }

    #[test]
    fn expands_like_kubernetes() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand_k8s("$(A)-$(B)-$$(A)-$", &env), "1-$(B)-$(A)-$");
    }
}
