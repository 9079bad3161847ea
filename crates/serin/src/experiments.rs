//! Printing Argo Experiments for `serin get experiment[s] [NAME]`.

use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `serin get experiments`: one line each.
pub fn print_table(all: &[Value]) {
    if all.is_empty() {
        println!("no Experiments in the manifests");
        return;
    }
    println!(
        "{:<32} {:<12} {:<10} {:<9}  MESSAGE",
        "NAME", "PHASE", "TEMPLATES", "ANALYSES"
    );
    for v in all {
        let st = &v["status"];
        let count = |k: &str| st[k].as_array().map_or(0, Vec::len);
        println!(
            "{:<32} {:<12} {:<10} {:<9}  {}",
            s(&v["metadata"]["name"]),
            st["phase"].as_str().unwrap_or("-"),
            count("templateStatuses"),
            count("analysisRuns"),
            s(&st["message"])
        );
    }
}

/// `serin get experiment NAME`: phase, each template with its pods, each
/// analysis run.
pub fn print(v: &Value) {
    let st = &v["status"];
    println!("Name:        {}", s(&v["metadata"]["name"]));
    println!(
        "Status:      {}  {}",
        st["phase"].as_str().unwrap_or("-"),
        s(&st["message"])
    );
    if let Some(at) = st["availableAt"].as_str() {
        println!("Available:   {at}");
    }
    if let Some(d) = v["spec"]["duration"]
        .as_str()
        .map(str::to_string)
        .or_else(|| v["spec"]["duration"].as_i64().map(|n| format!("{n}s")))
    {
        println!("Duration:    {d}");
    }
    if v["spec"]["terminate"] == true {
        println!("Terminate:   requested");
    }
    println!("Templates:");
    for t in st["templateStatuses"].as_array().into_iter().flatten() {
        println!(
            "  {:<20} {:<12} {}/{} available  hash {}  {}",
            s(&t["name"]),
            s(&t["status"]),
            t["availableReplicas"],
            t["replicas"],
            s(&t["podTemplateHash"]),
            s(&t["message"])
        );
        for p in t["pods"].as_array().into_iter().flatten() {
            println!(
                "    {:<40} {:<12} ready={:<5} {}",
                s(&p["name"]),
                s(&p["status"]),
                p["ready"],
                s(&p["addr"])
            );
        }
    }
    let runs = st["analysisRuns"].as_array().cloned().unwrap_or_default();
    if !runs.is_empty() {
        println!("Analyses:");
        for r in runs {
            println!(
                "  {:<20} {:<12} run {}  {}",
                s(&r["name"]),
                s(&r["phase"]),
                s(&r["analysisRun"]),
                s(&r["message"])
            );
        }
    }
}
