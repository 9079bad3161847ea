//! `{{variable}}` substitution (no expressions, no code) and the default
//! templates, which produce the seed's Slack attachments.

use std::collections::BTreeMap;

use crate::config::{FieldTemplate, Template};
use crate::trigger::Trigger;

/// Variables a template may use.
pub const VARIABLES: [&str; 7] = [
    "rollout",
    "revision",
    "message",
    "step",
    "analysis_run",
    "trigger",
    "time",
];

fn canonical(name: &str) -> &str {
    match name {
        ".rollout.metadata.name" => "rollout",
        other => other,
    }
}

/// The variables a template uses that do not exist.
pub fn unknown_variables(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let name = canonical(after[..close].trim());
        if !VARIABLES.contains(&name) {
            out.push(name.to_string());
        }
        rest = &after[close + 2..];
    }
    out
}

/// Replaces each `{{name}}` by its value (missing values are empty).
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = canonical(after[..close].trim());
        if let Some(v) = vars.get(name) {
            out.push_str(v);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn field(title: &str, value: &str) -> FieldTemplate {
    FieldTemplate {
        title: title.into(),
        value: value.into(),
        short: true,
    }
}

/// The built-in template for a trigger: the seed's messages and colors
/// (`good` / `warning` / `danger`) with Service and Revision fields.
pub fn default_template(trigger: Trigger) -> Template {
    let (message, color) = match trigger {
        Trigger::RolloutUpdated => (
            "🚀 Starting deployment of {{revision}} for {{rollout}}",
            "warning",
        ),
        Trigger::StepCompleted => ("Step {{step}} completed for {{rollout}}", "good"),
        Trigger::Paused => ("⏸️ {{rollout}} paused: {{message}}", "warning"),
        Trigger::Aborted => (
            "🚨 Deployment ABORTED for {{rollout}}: {{message}}",
            "danger",
        ),
        Trigger::Completed => (
            "✅ Deployment SUCCEEDED for {{rollout}} ({{revision}})",
            "good",
        ),
        Trigger::AnalysisRunFailed => (
            "❌ Analysis {{analysis_run}} FAILED for {{rollout}}",
            "danger",
        ),
        Trigger::AnalysisRunError => (
            "⚠️ Analysis {{analysis_run}} errored for {{rollout}}",
            "danger",
        ),
        Trigger::EmergencyRollback => ("🚨 EMERGENCY ROLLBACK completed for {{rollout}}", "danger"),
    };
    let fields = if trigger == Trigger::EmergencyRollback {
        vec![field("Service", "{{rollout}}"), field("Time", "{{time}}")]
    } else {
        vec![
            field("Service", "{{rollout}}"),
            field("Revision", "{{revision}}"),
        ]
    };
    Template {
        message: message.into(),
        color: Some(color.into()),
        fields: Some(fields),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` for milliseconds since the epoch (civil-from-days,
/// H. Hinnant), so `{{time}}` needs no date crate.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_variables_and_nothing_else() {
        let mut vars = BTreeMap::new();
        vars.insert("rollout", "api".to_string());
        vars.insert("message", "{{rollout}} $(rm -rf /)".to_string());
        assert_eq!(
            render(
                "{{ rollout }}/{{.rollout.metadata.name}}: {{message}} {{step}}",
                &vars
            ),
            "api/api: {{rollout}} $(rm -rf /) "
        );
        assert_eq!(render("open {{rollout", &vars), "open {{rollout");
        assert_eq!(
            unknown_variables("{{rollout}} {{nope}} {{ step }}"),
            ["nope"]
        );
    }

    #[test]
    fn formats_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
    }
}
