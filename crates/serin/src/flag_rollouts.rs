//! Printing FlagRollouts for `serin get flagrollout[s] [NAME]`.

use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn pct(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), |p| format!("{p} %"))
}

/// `serin get flagrollouts`: one line each.
pub fn print_table(all: &[Value]) {
    if all.is_empty() {
        println!("no FlagRollouts in the manifests");
        return;
    }
    println!(
        "{:<28} {:<28} {:<12} {:>5} {:>7}  MESSAGE",
        "NAME", "FLAG", "PHASE", "STEP", "PERCENT"
    );
    for v in all {
        println!(
            "{:<28} {:<28} {:<12} {:>5} {:>7}  {}",
            s(&v["name"]),
            s(&v["flag"]),
            s(&v["phase"]),
            format!("{}/{}", v["currentStep"], v["totalSteps"]),
            pct(&v["percentage"]),
            s(&v["message"])
        );
    }
}

/// `serin get flagrollout NAME`: the rollout and a line per step.
pub fn print(v: &Value) {
    println!("Name:        {}", s(&v["name"]));
    println!(
        "Flag:        {} ({})",
        s(&v["flag"]),
        v["environment"].as_str().unwrap_or("default environment")
    );
    println!("Status:      {}  {}", s(&v["phase"]), s(&v["message"]));
    println!(
        "Step:        {}/{}   percentage: {}   interval: {}",
        v["currentStep"],
        v["totalSteps"],
        pct(&v["percentage"]),
        s(&v["interval"])
    );
    if let Some(started) = v["startedAt"].as_str() {
        println!("Started:     {started}   updated: {}", s(&v["updatedAt"]));
    }
    let templates: Vec<&str> = v["analysis"]["templates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["templateName"].as_str())
        .collect();
    if !templates.is_empty() {
        println!("Analysis:    {}", templates.join(", "));
    }
    let results = v["stepResults"].as_array().cloned().unwrap_or_default();
    if results.is_empty() {
        for (i, p) in v["steps"].as_array().into_iter().flatten().enumerate() {
            println!(
                "  step {:<2} {:>3} %  Pending",
                i + 1,
                p.as_i64().unwrap_or(0)
            );
        }
        return;
    }
    for r in results {
        let a = &r["analysis"];
        let analysis = if a.is_object() {
            format!("analysis {} {}", s(&a["phase"]), s(&a["message"]))
        } else {
            String::new()
        };
        println!(
            "  step {:<2} {:>3} %  {:<8} {}",
            r["step"].as_u64().unwrap_or(0),
            r["percentage"].as_u64().unwrap_or(0),
            s(&r["state"]),
            analysis.trim_end()
        );
    }
}
