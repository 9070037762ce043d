// Parses OpenMetrics text with Python `prometheus_client`'s OpenMetrics
// parser (`openmetrics_parse.py`), an implementation independent of the
// crate's, and fails the test on any error. Included by test crates with
// `#[path = "../support/openmetrics.rs"] mod openmetrics;`.
//
// The interpreter is `$OPENMETRICS_PYTHON`, else the virtual environment
// `scripts/test.sh` makes at `<target>/om-venv`.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

/// The Python interpreter that has `prometheus_client`.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("OPENMETRICS_PYTHON") {
        return PathBuf::from(python);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let python = target.join("om-venv/bin/python");
    assert!(
        python.is_file(),
        "no Python with prometheus_client at {}: scripts/test.sh makes it \
         (python3 -m venv {}/om-venv && {}/om-venv/bin/pip install prometheus_client), \
         or set OPENMETRICS_PYTHON",
        python.display(),
        target.display(),
        target.display()
    );
    python
}

/// The metric families of `exposition`, as `prometheus_client` parsed them:
/// `[{"name", "type", "unit", "help", "samples": [{"name", "labels", "value",
/// "exemplar": null | {"labels", "value", "timestamp"}}]}]`. Panics, with
/// the parser's error and the exposition, when it does not parse.
#[allow(dead_code, unreachable_pub)]
pub fn parse(exposition: &str) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/openmetrics_parse.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the OpenMetrics parser");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition:\n{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// The samples of every family of `parsed`, flattened.
#[allow(dead_code, unreachable_pub)]
pub fn samples(parsed: &serde_json::Value) -> Vec<&serde_json::Value> {
    parsed.as_array().unwrap().iter().flat_map(|f| f["samples"].as_array().unwrap()).collect()
}
