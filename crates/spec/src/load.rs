//! Loading manifests from files and directories into a [`ManifestSet`].

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diag::{Diagnostic, Severity};
use crate::model::*;
use crate::yaml::{self, Loc, LocMap, Seg, format_path};

/// A file the set was loaded from, kept for source snippets.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path as given (or a display name).
    pub path: String,
    /// Full text.
    pub text: String,
}

/// A typed resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// A Rollout.
    Rollout(Box<Rollout>),
    /// An AnalysisTemplate or ClusterAnalysisTemplate (see [`Document::kind`]).
    AnalysisTemplate(Box<AnalysisTemplate>),
    /// An AnalysisRun.
    AnalysisRun(Box<AnalysisRun>),
    /// A v1 Service.
    Service(Box<Service>),
    /// An Istio VirtualService.
    VirtualService(Box<VirtualService>),
    /// A PodDisruptionBudget.
    PodDisruptionBudget(Box<PodDisruptionBudget>),
    /// An apps/v1 Deployment and, for a RollingUpdate strategy, the Rollout Serin runs for it.
    Deployment {
        /// As written.
        deployment: Box<Deployment>,
        /// Converted (`None` for a Recreate strategy).
        rollout: Option<Box<Rollout>>,
    },
    /// A `serin.dev/v1alpha1` FlagRollout (guarded feature-flag rollout).
    FlagRollout(Box<FlagRollout>),
    /// Argo's standalone Experiment.
    Experiment(Box<Experiment>),
    /// A kind Serin does not manage (ConfigMap, Job, ...): kept by name only.
    Unmanaged,
    /// A managed kind that failed to load (its error is in the set's diagnostics).
    Invalid,
}

/// One document of one file.
#[derive(Clone, Debug)]
pub struct Document {
    /// Index into [`ManifestSet::files`].
    pub file: usize,
    /// 0-based document index in the file.
    pub index: usize,
    /// `apiVersion` as written (empty if missing).
    pub api_version: String,
    /// `kind` as written (empty if missing).
    pub kind: String,
    /// `metadata.name`.
    pub name: Option<String>,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// Typed content.
    pub resource: Resource,
    /// Field locations.
    pub locs: LocMap,
    /// The document as JSON (after YAML resolution).
    pub value: Value,
    /// Field paths dropped because they failed to load (each has an error
    /// diagnostic). When non-empty, `resource` was typed from what remained,
    /// so lint can still check the rest; it is partial and must not be run.
    pub repaired: Vec<String>,
}

/// Everything loaded from a set of paths, linted together.
#[derive(Clone, Debug, Default)]
pub struct ManifestSet {
    /// Source files.
    pub files: Vec<SourceFile>,
    /// Documents, in load order.
    pub documents: Vec<Document>,
    /// Problems found while loading (syntax, types, unknown fields, ...).
    pub diagnostics: Vec<Diagnostic>,
}

/// Whether `api_version` is one of the Argo-compatible groups Serin accepts.
pub fn is_rollouts_api(api_version: &str) -> bool {
    matches!(api_version, "argoproj.io/v1alpha1" | "serin.dev/v1alpha1")
}

fn is_manifest_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

impl ManifestSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Load files and directories (recursively: `*.yaml`, `*.yml`, `*.json`,
    /// in name order) into one set. Unreadable paths become diagnostics.
    pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Self {
        let mut set = Self::new();
        for p in paths {
            set.add_path(p.as_ref());
        }
        set
    }

    /// Add a file, or a directory recursively.
    pub fn add_path(&mut self, path: &Path) {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.io_error(path, &e.to_string());
                return;
            }
        };
        if meta.is_dir() {
            let mut entries: Vec<_> = match std::fs::read_dir(path) {
                Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
                Err(e) => {
                    self.io_error(path, &e.to_string());
                    return;
                }
            };
            entries.sort();
            for p in entries {
                // Do not follow symlinked directories: no loops.
                let is_link_dir = std::fs::symlink_metadata(&p)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false)
                    && p.is_dir();
                let wanted = (p.is_dir() && !is_link_dir) || (p.is_file() && is_manifest_file(&p));
                if wanted {
                    self.add_path(&p);
                }
            }
        } else {
            match std::fs::read(path) {
                Ok(bytes) => self.add_bytes(&path.display().to_string(), &bytes),
                Err(e) => self.io_error(path, &e.to_string()),
            }
        }
    }

    fn io_error(&mut self, path: &Path, msg: &str) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            code: "io-error".into(),
            file: path.display().to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message: format!("cannot read: {msg}"),
            hint: "check the path and its permissions".into(),
            offset: 0,
            length: 0,
        });
    }

    /// Add a file's bytes under a display name.
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.add_source(name, text),
            Err(e) => {
                let before = &bytes[..e.valid_up_to()];
                let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
                let col = before.iter().rev().take_while(|b| **b != b'\n').count() as u32 + 1;
                self.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    code: "encoding".into(),
                    file: name.to_string(),
                    line,
                    column: col,
                    path: String::new(),
                    message: "file is not valid UTF-8".into(),
                    hint: "save the file as UTF-8".into(),
                    offset: e.valid_up_to(),
                    length: 0,
                });
            }
        }
    }

    /// Add a file's text under a display name.
    pub fn add_source(&mut self, name: &str, text: &str) {
        // A BOM is not content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let file = self.files.len();
        self.files.push(SourceFile {
            path: name.to_string(),
            text: text.to_string(),
        });
        let parsed = yaml::parse_documents(text);
        for p in parsed.problems {
            self.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                code: p.code.into(),
                file: name.to_string(),
                line: p.loc.line,
                column: p.loc.column,
                path: p.path,
                message: p.message,
                hint: p.hint,
                offset: p.loc.offset,
                length: p.loc.len,
            });
        }
        for d in parsed.docs {
            self.add_document(file, d);
        }
        self.resolve_workload_refs();
    }

    /// The Deployment a Rollout's `workloadRef` names, in the set and the
    /// Rollout's namespace.
    pub fn workload_ref_target(&self, from: &Document, r: &Rollout) -> Option<&Document> {
        let w = r.spec.workload_ref.as_ref()?;
        if w.kind.as_deref() != Some("Deployment") {
            return None;
        }
        let name = w.name.as_deref()?;
        self.documents.iter().find(|d| {
            matches!(d.resource, Resource::Deployment { .. })
                && d.name.as_deref() == Some(name)
                && match (&d.namespace, &from.namespace) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        })
    }

    /// Argo's migration path: a Rollout with a `workloadRef` to a Deployment
    /// runs that Deployment's pod template (and selector). Filled in once
    /// both documents are loaded, whatever the file order.
    fn resolve_workload_refs(&mut self) {
        let mut fills = Vec::new();
        for (i, d) in self.documents.iter().enumerate() {
            let Resource::Rollout(r) = &d.resource else {
                continue;
            };
            if r.spec.template.is_some() {
                continue;
            }
            let Some(target) = self.workload_ref_target(d, r) else {
                continue;
            };
            if let Resource::Deployment { deployment, .. } = &target.resource {
                fills.push((
                    i,
                    deployment.spec.template.clone(),
                    deployment.spec.selector.clone(),
                ));
            }
        }
        for (i, template, selector) in fills {
            if let Some(Resource::Rollout(r)) = self.documents.get_mut(i).map(|d| &mut d.resource) {
                r.spec.template = template;
                if r.spec.selector.is_none() {
                    r.spec.selector = selector;
                }
            }
        }
    }

    /// The location diagnostic fields for `loc` in file `file`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn diag(
        &self,
        severity: Severity,
        code: &str,
        file: usize,
        loc: Loc,
        path: &str,
        message: String,
        hint: String,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            code: code.to_string(),
            file: self
                .files
                .get(file)
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            line: loc.line,
            column: loc.column,
            path: path.to_string(),
            message,
            hint,
            offset: loc.offset,
            length: loc.len,
        }
    }

    fn add_document(&mut self, file: usize, d: yaml::YamlDoc) {
        let locs = d.locs;
        let value = d.value;
        let str_at = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let meta_str = |key: &str| {
            value
                .get("metadata")
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let mut doc = Document {
            file,
            index: d.index,
            api_version: str_at("apiVersion").unwrap_or_default(),
            kind: str_at("kind").unwrap_or_default(),
            name: meta_str("name"),
            namespace: meta_str("namespace"),
            resource: Resource::Invalid,
            locs,
            value: Value::Null,
            repaired: Vec::new(),
        };
        if !value.is_object() {
            let diag = self.diag(
                Severity::Error,
                "not-a-mapping",
                file,
                doc.locs.root,
                "",
                "a manifest document must be a mapping with apiVersion, kind and metadata".into(),
                "start the document with `apiVersion:` and `kind:`".into(),
            );
            self.diagnostics.push(diag);
            return;
        }
        for field in ["apiVersion", "kind"] {
            match value.get(field) {
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(_) => {
                    let diag = self.diag(
                        Severity::Error,
                        "wrong-type",
                        file,
                        doc.locs.value(field),
                        field,
                        format!("`{field}` must be a non-empty string"),
                        "e.g. `apiVersion: argoproj.io/v1alpha1`, `kind: Rollout`".into(),
                    );
                    self.diagnostics.push(diag);
                }
                None => {
                    let diag = self.diag(
                        Severity::Error,
                        "missing-field",
                        file,
                        doc.locs.root,
                        field,
                        format!("missing field `{field}`"),
                        "every manifest needs `apiVersion` and `kind`".into(),
                    );
                    self.diagnostics.push(diag);
                }
            }
        }
        if doc.api_version.is_empty() || doc.kind.is_empty() {
            doc.value = value;
            self.documents.push(doc);
            return;
        }
        let api = doc.api_version.as_str();
        // Managed kinds are recognised by kind *and* API group, so e.g. an
        // App Mesh `VirtualService` or a Knative `Service` is simply unmanaged.
        let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let expected_api: Option<&str> = match (doc.kind.as_str(), group) {
            (
                "Rollout"
                | "AnalysisTemplate"
                | "ClusterAnalysisTemplate"
                | "AnalysisRun"
                | "Experiment",
                "argoproj.io" | "serin.dev",
            ) => (!is_rollouts_api(api)).then_some("argoproj.io/v1alpha1 (or serin.dev/v1alpha1)"),
            ("Service", "") => (api != "v1").then_some("v1"),
            ("VirtualService", "networking.istio.io") => None,
            ("PodDisruptionBudget", "policy") => {
                (!matches!(api, "policy/v1" | "policy/v1beta1")).then_some("policy/v1")
            }
            ("Deployment", "apps") => (api != "apps/v1").then_some("apps/v1"),
            // Serin's own kind: only its own group, but an Argo-group
            // FlagRollout is surely meant as one and gets told so.
            ("FlagRollout", "serin.dev" | "argoproj.io") => {
                (api != SERIN_API_VERSION).then_some(SERIN_API_VERSION)
            }
            _ => {
                doc.resource = Resource::Unmanaged;
                doc.value = value;
                self.documents.push(doc);
                return;
            }
        };
        if let Some(expected) = expected_api {
            let diag = self.diag(
                Severity::Error,
                "unsupported-api-version",
                file,
                doc.locs.value("apiVersion"),
                "apiVersion",
                format!("unsupported apiVersion `{api}` for kind {}", doc.kind),
                format!("use apiVersion: {expected}"),
            );
            self.diagnostics.push(diag);
            doc.value = value;
            self.documents.push(doc);
            return;
        }
        let mut removed: Vec<String> = Vec::new();
        let rm = &mut removed;
        doc.resource = match doc.kind.as_str() {
            "Rollout" => self
                .typed::<Rollout>(file, &doc.locs, &value, rm)
                .map(|r| Resource::Rollout(Box::new(r))),
            "AnalysisTemplate" | "ClusterAnalysisTemplate" => self
                .typed::<AnalysisTemplate>(file, &doc.locs, &value, rm)
                .map(|r| Resource::AnalysisTemplate(Box::new(r))),
            "AnalysisRun" => self
                .typed::<AnalysisRun>(file, &doc.locs, &value, rm)
                .map(|r| Resource::AnalysisRun(Box::new(r))),
            "Service" => self
                .typed::<Service>(file, &doc.locs, &value, rm)
                .map(|r| Resource::Service(Box::new(r))),
            "VirtualService" => self
                .typed::<VirtualService>(file, &doc.locs, &value, rm)
                .map(|r| Resource::VirtualService(Box::new(r))),
            "PodDisruptionBudget" => self
                .typed::<PodDisruptionBudget>(file, &doc.locs, &value, rm)
                .map(|r| Resource::PodDisruptionBudget(Box::new(r))),
            "FlagRollout" => self
                .typed::<FlagRollout>(file, &doc.locs, &value, rm)
                .map(|r| Resource::FlagRollout(Box::new(r))),
            "Experiment" => self
                .typed::<Experiment>(file, &doc.locs, &value, rm)
                .map(|r| Resource::Experiment(Box::new(r))),
            "Deployment" => self
                .typed::<Deployment>(file, &doc.locs, &value, rm)
                .map(|d| {
                    let rolling = matches!(
                        d.spec.strategy.type_.as_deref(),
                        None | Some("RollingUpdate")
                    );
                    let rollout = rolling.then(|| Box::new(d.to_rollout()));
                    Resource::Deployment {
                        deployment: Box::new(d),
                        rollout,
                    }
                }),
            _ => None,
        }
        .unwrap_or(Resource::Invalid);
        doc.repaired = removed;
        doc.value = value;
        self.documents.push(doc);
    }

    /// Deserialize `value` as `T`, reporting unknown fields (warnings) and
    /// type errors (errors), located. serde stops at the first error, so after
    /// one the offending field is dropped and deserialization retried, to
    /// report every independent error of the document in one run; the paths
    /// dropped are returned in `removed`.
    fn typed<T: DeserializeOwned>(
        &mut self,
        file: usize,
        locs: &LocMap,
        value: &Value,
        removed: &mut Vec<String>,
    ) -> Option<T> {
        let mut current = value.clone();
        for attempt in 0..32 {
            let mut unknown: Vec<Vec<Seg>> = Vec::new();
            let result = {
                let mut cb = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(&p));
                let de = serde_ignored::Deserializer::new(&current, &mut cb);
                serde_path_to_error::deserialize::<_, T>(de)
            };
            if attempt == 0 {
                self.report_unknown(file, locs, unknown);
            }
            let e = match result {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let segs: Vec<Seg> = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    _ => None,
                })
                .collect();
            let mut path = format_path(&segs);
            let raw = e.inner().to_string();
            let under_removed = |p: &str| removed.iter().any(|r| is_under(p, r));
            if let Some(field) = missing_field(&raw) {
                let loc = locs.value(&path);
                path = crate::yaml::join_key(&path, field);
                // A required field we dropped ourselves is not a new problem.
                if !under_removed(&path) {
                    let d = self.diag(
                        Severity::Error,
                        "missing-field",
                        file,
                        loc,
                        &path,
                        format!("missing required field `{field}`"),
                        format!("add `{field}:` here"),
                    );
                    self.diagnostics.push(d);
                }
            } else {
                let (msg, hint) = explain_type_error(&raw, value_at(value, &segs));
                let code = if raw.starts_with("invalid type") {
                    "wrong-type"
                } else {
                    "invalid-value"
                };
                let d = self.diag(
                    Severity::Error,
                    code,
                    file,
                    locs.value(&path),
                    &path,
                    msg,
                    hint,
                );
                self.diagnostics.push(d);
            }
            match remove_at(&mut current, &segs) {
                Some(p) => removed.push(p),
                None => return None,
            }
        }
        None
    }

    fn report_unknown(&mut self, file: usize, locs: &LocMap, unknown: Vec<Vec<Seg>>) {
        for segs in unknown {
            let path = format_path(&segs);
            let field = match segs.last() {
                Some(Seg::Key(k)) => k.clone(),
                _ => path.clone(),
            };
            let parent = crate::yaml::parent_path(&path).to_string();
            let d = self.diag(
                Severity::Warning,
                "unknown-field",
                file,
                locs.key(&path),
                &path,
                format!(
                    "unknown field `{field}`{}",
                    if parent.is_empty() {
                        String::new()
                    } else {
                        format!(" in `{parent}`")
                    }
                ),
                "it is ignored; check the spelling against the Argo Rollouts / Kubernetes field names"
                    .into(),
            );
            self.diagnostics.push(d);
        }
    }

    /// Every Rollout Serin would run, with its document: Rollouts as written
    /// and those converted from RollingUpdate Deployments.
    /// A Deployment that a Rollout's `workloadRef` names is not run on its
    /// own: the Rollout runs its pod template.
    pub fn rollouts(&self) -> impl Iterator<Item = (&Document, &Rollout)> {
        let referenced: Vec<usize> = self
            .documents
            .iter()
            .filter_map(|d| match &d.resource {
                Resource::Rollout(r) => self.workload_ref_target(d, r),
                _ => None,
            })
            .filter_map(|t| self.documents.iter().position(|x| std::ptr::eq(x, t)))
            .collect();
        self.documents
            .iter()
            .enumerate()
            .filter_map(move |(i, d)| match &d.resource {
                Resource::Rollout(r) => Some((d, r.as_ref())),
                Resource::Deployment {
                    rollout: Some(r), ..
                } if !referenced.contains(&i) => Some((d, r.as_ref())),
                _ => None,
            })
    }

    /// Every loaded (Cluster)AnalysisTemplate.
    pub fn analysis_templates(&self) -> impl Iterator<Item = (&Document, &AnalysisTemplate)> {
        self.documents.iter().filter_map(|d| match &d.resource {
            Resource::AnalysisTemplate(t) => Some((d, t.as_ref())),
            _ => None,
        })
    }

    /// Every FlagRollout.
    pub fn flag_rollouts(&self) -> impl Iterator<Item = (&Document, &FlagRollout)> {
        self.documents.iter().filter_map(|d| match &d.resource {
            Resource::FlagRollout(f) => Some((d, f.as_ref())),
            _ => None,
        })
    }

    /// Every Experiment that loaded whole (a partly loaded one has its
    /// errors and is not run).
    pub fn experiments(&self) -> impl Iterator<Item = (&Document, &Experiment)> {
        self.documents.iter().filter_map(|d| match &d.resource {
            Resource::Experiment(x) if d.repaired.is_empty() => Some((d, x.as_ref())),
            _ => None,
        })
    }

    /// Every Service.
    pub fn services(&self) -> impl Iterator<Item = (&Document, &Service)> {
        self.documents.iter().filter_map(|d| match &d.resource {
            Resource::Service(s) => Some((d, s.as_ref())),
            _ => None,
        })
    }

    /// Every VirtualService.
    pub fn virtual_services(&self) -> impl Iterator<Item = (&Document, &VirtualService)> {
        self.documents.iter().filter_map(|d| match &d.resource {
            Resource::VirtualService(s) => Some((d, s.as_ref())),
            _ => None,
        })
    }

    /// The source text of a document's file.
    pub fn source_of(&self, doc: &Document) -> Option<&SourceFile> {
        self.files.get(doc.file)
    }

    /// The source file with this display path.
    pub fn file_by_path(&self, path: &str) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.path == path)
    }
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    let mut out = Vec::new();
    fn walk(p: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
        match p {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push(Seg::Index(*index));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                out.push(Seg::Key(key.clone()));
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    walk(p, &mut out);
    out
}

fn value_at<'v>(v: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    let mut cur = v;
    for s in segs {
        cur = match s {
            Seg::Key(k) => cur.get(k)?,
            Seg::Index(i) => cur.get(*i)?,
        };
    }
    Some(cur)
}

/// Is rendered path `p` equal to or inside `root`?
pub(crate) fn is_under(p: &str, root: &str) -> bool {
    p == root
        || (p.starts_with(root) && matches!(p.as_bytes().get(root.len()), Some(b'.') | Some(b'[')))
}

/// Drop the mapping entry holding the value at `segs` (for a list element,
/// the whole list, so later indexes keep their meaning). Returns the
/// rendered path dropped, or `None` when only the root is left.
fn remove_at(v: &mut Value, segs: &[Seg]) -> Option<String> {
    let mut target = segs.to_vec();
    while matches!(target.last(), Some(Seg::Index(_))) {
        target.pop();
    }
    let Some(Seg::Key(k)) = target.pop() else {
        return None;
    };
    let mut cur = &mut *v;
    for s in &target {
        cur = match s {
            Seg::Key(k) => cur.get_mut(k.as_str())?,
            Seg::Index(i) => cur.get_mut(*i)?,
        };
    }
    cur.as_object_mut()?.remove(&k)?;
    target.push(Seg::Key(k));
    Some(format_path(&target))
}

fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Turn serde's wording into a user's: name the expected type plainly and,
/// for YAML 1.1 booleans, say why they are not booleans here.
fn explain_type_error(raw: &str, found: Option<&Value>) -> (String, String) {
    let expected = raw.rsplit_once(", expected ").map(|(_, e)| e.trim());
    let plain = |e: &str| -> String {
        match e {
            "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" => "an integer".into(),
            "f32" | "f64" => "a number".into(),
            "a boolean" | "bool" => "a boolean (true or false)".into(),
            "a string" => "a string".into(),
            "a sequence" => "a list".into(),
            "a map" => "a mapping".into(),
            other if other.starts_with("struct ") => "a mapping".into(),
            other => other.to_string(),
        }
    };
    let found_desc = match found {
        Some(Value::String(s)) => format!("the string {s:?}"),
        Some(Value::Number(n)) => format!("the number {n}"),
        Some(Value::Bool(b)) => format!("the boolean {b}"),
        Some(Value::Array(_)) => "a list".into(),
        Some(Value::Object(_)) => "a mapping".into(),
        Some(Value::Null) => "null".into(),
        None => "a value".into(),
    };
    if raw.starts_with("invalid type") {
        let exp = expected.map(plain).unwrap_or_else(|| "another type".into());
        let msg = format!("expected {exp}, found {found_desc}");
        let hint = match found {
            Some(Value::String(s))
                if exp.starts_with("a boolean")
                    && matches!(
                        s.as_str(),
                        "yes"
                            | "no"
                            | "on"
                            | "off"
                            | "y"
                            | "n"
                            | "True"
                            | "False"
                            | "TRUE"
                            | "FALSE"
                    ) =>
            {
                "Serin reads YAML 1.2 strictly: only `true` and `false` are booleans".to_string()
            }
            Some(Value::String(s)) if exp == "an integer" && s.parse::<i64>().is_ok() => {
                "remove the quotes: this field takes a number".to_string()
            }
            Some(Value::Number(_)) if exp == "a string" => {
                "quote the value: this field takes a string".to_string()
            }
            _ => format!("change the value to {exp}"),
        };
        (msg, hint)
    } else {
        let msg = raw.to_string();
        let hint = match expected {
            Some(e) => format!("expected {}", plain(e)),
            None => "fix the value".to_string(),
        };
        (msg, hint)
    }
}
