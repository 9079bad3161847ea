//! Arguments: merging template args with the rollout's, and `{{args.NAME}}`
//! substitution.

use std::collections::BTreeMap;

use serin_spec::{AnalysisRunArgument, Argument, PodTemplateHashValue};

/// An argument problem, named so lint can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A template argument has no value, and the rollout supplies none.
    #[error(
        "argument `{name}` has no value: the template declares it without a default and the rollout does not pass it"
    )]
    MissingArg {
        /// Argument name.
        name: String,
    },
    /// `{{args.NAME}}` used in a field, but no argument `NAME` is declared.
    #[error("`{{{{args.{name}}}}}` in {field} refers to an argument no template declares")]
    Undeclared {
        /// Argument name.
        name: String,
        /// Field path within the metric, e.g. `provider.prometheus.query`.
        field: String,
    },
    /// Two templates declare the same argument with different values.
    #[error("argument `{name}` is declared by several templates with different values")]
    Conflict {
        /// Argument name.
        name: String,
    },
    /// `valueFrom` could not be resolved.
    #[error("argument `{name}`: {reason}")]
    Unresolvable {
        /// Argument name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// What `valueFrom` in a rollout's argument can read.
#[derive(Debug, Clone, Default)]
pub struct ArgSources {
    /// Pod-template hash of the stable revision (`podTemplateHashValue: Stable`).
    pub stable_hash: Option<String>,
    /// Pod-template hash of the latest revision (`podTemplateHashValue: Latest`).
    pub latest_hash: Option<String>,
    /// The rollout object as JSON, for `fieldRef.fieldPath`
    /// (`metadata.name`, `metadata.labels['app']`, `spec.replicas`, …).
    pub rollout: serde_json::Value,
}

/// Resolved argument values by name.
pub type ResolvedArgs = BTreeMap<String, String>;

/// Merge `template_args` (from every template of the run, in order) with the
/// rollout's `rollout_args`, Argo's `MergeArgs`: a rollout value overrides the
/// template default; a template argument left without a value is
/// [`ArgError::MissingArg`]; rollout arguments no template declares are
/// ignored, as Argo does.
pub fn resolve_args(
    template_args: &[Argument],
    rollout_args: &[AnalysisRunArgument],
    sources: &ArgSources,
) -> Result<ResolvedArgs, ArgError> {
    // Flatten the templates' declarations (Argo: identical duplicates merge,
    // differing values conflict).
    let mut declared: BTreeMap<String, Option<String>> = BTreeMap::new();
    for a in template_args {
        match declared.get(&a.name) {
            Some(Some(existing)) if a.value.as_ref().is_some_and(|v| v != existing) => {
                return Err(ArgError::Conflict {
                    name: a.name.clone(),
                });
            }
            Some(Some(_)) => {}
            _ => {
                declared.insert(a.name.clone(), a.value.clone());
            }
        }
        if a.value_from.is_some() && a.value.is_none() {
            // secretKeyRef etc. — no Kubernetes secrets locally.
            return Err(ArgError::Unresolvable {
                name: a.name.clone(),
                reason: "template `valueFrom` (secretKeyRef) is not supported; pass the value from the rollout".into(),
            });
        }
    }
    for ra in rollout_args {
        if !declared.contains_key(&ra.name) {
            tracing::debug!(arg = %ra.name, "rollout argument not declared by any template: ignored");
            continue;
        }
        let value = match (&ra.value, &ra.value_from) {
            (Some(v), None) => v.clone(),
            (Some(_), Some(_)) => {
                return Err(ArgError::Unresolvable {
                    name: ra.name.clone(),
                    reason: "has both `value` and `valueFrom`".into(),
                });
            }
            (None, Some(from)) => resolve_value_from(&ra.name, from, sources)?,
            (None, None) => {
                return Err(ArgError::MissingArg {
                    name: ra.name.clone(),
                });
            }
        };
        declared.insert(ra.name.clone(), Some(value));
    }
    let mut out = ResolvedArgs::new();
    for (name, value) in declared {
        match value {
            Some(v) => {
                out.insert(name, v);
            }
            None => return Err(ArgError::MissingArg { name }),
        }
    }
    Ok(out)
}

fn resolve_value_from(
    name: &str,
    from: &serin_spec::ArgumentValueFrom,
    sources: &ArgSources,
) -> Result<String, ArgError> {
    let unresolvable = |reason: String| ArgError::Unresolvable {
        name: name.to_string(),
        reason,
    };
    if let Some(which) = from.pod_template_hash_value {
        let hash = match which {
            PodTemplateHashValue::Stable => &sources.stable_hash,
            PodTemplateHashValue::Latest => &sources.latest_hash,
        };
        return hash
            .clone()
            .ok_or_else(|| unresolvable(format!("no {which:?} pod-template hash is known yet")));
    }
    if let Some(field) = &from.field_ref {
        let v = field_path(&sources.rollout, &field.field_path).ok_or_else(|| {
            unresolvable(format!(
                "fieldRef `{}` not found in the rollout",
                field.field_path
            ))
        })?;
        return Ok(match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    Err(unresolvable("empty `valueFrom`".into()))
}

/// Follow a Kubernetes field path such as `metadata.labels['app']` or
/// `spec.template.metadata.labels["app.kubernetes.io/name"]`.
pub fn field_path<'a>(root: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = root;
    let mut rest = path.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']')?;
            let key = after[..close]
                .trim()
                .trim_matches(|c| c == '\'' || c == '"');
            cur = match cur {
                serde_json::Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
                other => other.get(key)?,
            };
            rest = after[close + 1..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            cur = cur.get(&rest[..end])?;
            rest = rest[end..].trim_start_matches('.');
        }
    }
    Some(cur)
}

/// Replace every `{{args.NAME}}` (whitespace inside the braces allowed) in
/// `text`. `field` names the field for the error.
pub fn substitute(text: &str, args: &ResolvedArgs, field: &str) -> Result<String, ArgError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = after[..end].trim();
        if let Some(name) = inner.strip_prefix("args.") {
            match args.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    return Err(ArgError::Undeclared {
                        name: name.to_string(),
                        field: field.to_string(),
                    });
                }
            }
        } else {
            // Not an argument placeholder (Argo leaves other `{{…}}` alone).
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitute in every string of a JSON value; `path` is the value's field path.
pub fn substitute_json(
    v: &serde_json::Value,
    args: &ResolvedArgs,
    path: &str,
) -> Result<serde_json::Value, ArgError> {
    use serde_json::Value as J;
    Ok(match v {
        J::String(s) => J::String(substitute(s, args, path)?),
        J::Array(a) => J::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| substitute_json(x, args, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(o) => J::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), substitute_json(x, args, &format!("{path}.{k}"))?)))
                .collect::<Result<_, ArgError>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serin_spec::{ArgumentValueFrom, FieldRef};

    fn targ(name: &str, value: Option<&str>) -> Argument {
        Argument {
            name: name.into(),
            value: value.map(String::from),
            value_from: None,
        }
    }
    fn rarg(name: &str, value: &str) -> AnalysisRunArgument {
        AnalysisRunArgument {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[test]
    fn missing_arg_is_named() {
        let err = resolve_args(&[targ("service-name", None)], &[], &ArgSources::default());
        assert_eq!(
            err,
            Err(ArgError::MissingArg {
                name: "service-name".into()
            })
        );
    }

    #[test]
    fn rollout_overrides_default_and_value_from_resolves() {
        let sources = ArgSources {
            stable_hash: Some("abc123".into()),
            latest_hash: Some("def456".into()),
            rollout: serde_json::json!({"metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "frontend"}}}),
        };
        let rollout = vec![
            rarg("a", "override"),
            AnalysisRunArgument {
                name: "hash".into(),
                value: None,
                value_from: Some(ArgumentValueFrom {
                    pod_template_hash_value: Some(PodTemplateHashValue::Latest),
                    field_ref: None,
                }),
            },
            AnalysisRunArgument {
                name: "app".into(),
                value: None,
                value_from: Some(ArgumentValueFrom {
                    pod_template_hash_value: None,
                    field_ref: Some(FieldRef {
                        field_path: "metadata.labels['app.kubernetes.io/name']".into(),
                    }),
                }),
            },
            rarg("unused", "x"),
        ];
        let got = resolve_args(
            &[
                targ("a", Some("default")),
                targ("hash", None),
                targ("app", None),
                targ("b", Some("kept")),
            ],
            &rollout,
            &sources,
        );
        let want: ResolvedArgs = [
            ("a", "override"),
            ("app", "frontend"),
            ("b", "kept"),
            ("hash", "def456"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, Ok(want));
    }

    #[test]
    fn conflicting_template_defaults() {
        let err = resolve_args(
            &[targ("a", Some("1")), targ("a", Some("2"))],
            &[],
            &ArgSources::default(),
        );
        assert_eq!(err, Err(ArgError::Conflict { name: "a".into() }));
        let ok = resolve_args(
            &[targ("a", None), targ("a", Some("2"))],
            &[],
            &ArgSources::default(),
        );
        assert_eq!(ok.map(|m| m.get("a").cloned()), Ok(Some("2".into())));
    }

    #[test]
    fn substitution() {
        let args: ResolvedArgs = [("service-name".to_string(), "web".to_string())].into();
        assert_eq!(
            substitute(
                "rate(x{service=\"{{args.service-name}}\"}[5m]) {{ args.service-name }} {{other}}",
                &args,
                "q"
            ),
            Ok("rate(x{service=\"web\"}[5m]) web {{other}}".into())
        );
        assert_eq!(
            substitute("{{args.nope}}", &args, "provider.web.url"),
            Err(ArgError::Undeclared {
                name: "nope".into(),
                field: "provider.web.url".into()
            })
        );
        assert_eq!(
            substitute("unterminated {{args", &args, "q"),
            Ok("unterminated {{args".into())
        );
    }
}
