//! What `Client` sends and reads: the cell's tags and params as MLflow takes them, the
//! artifact URIs it can upload to, and the REST answers (errors named, JSON read).

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::store::RunRecord;

use super::{RUN_KEY_TAG, STATUS_TAG};

pub(super) fn tags(record: &RunRecord, run_key: &str) -> Vec<Value> {
    let mut tags = vec![
        (RUN_KEY_TAG, run_key.to_string()),
        ("runner.experiment", record.experiment.clone()),
        ("runner.variant", record.variant.clone()),
        ("runner.seed", record.seed.to_string()),
        ("runner.device", record.device.clone()),
        (STATUS_TAG, record.status.to_string()),
    ];
    if let Some(state) = &record.code_state {
        tags.push(("runner.code_state", state.clone()));
    }
    if let Some(commit) = record.provenance.as_ref().and_then(|p| p.commit.clone()) {
        tags.push(("runner.commit", commit.clone()));
        tags.push(("mlflow.source.git.commit", commit));
    }
    tags.into_iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

/// run.json's `config`, flattened: `training.optimizer.learning_rate = 0.001`; lists and
/// nulls as their JSON text.
pub(super) fn params(record: &RunRecord) -> Vec<Value> {
    // Through the JSON text, as run.json has it: `to_value` would widen an f32 such as 0.1 to
    // 0.10000000149011612.
    let config = serde_json::to_vec(&record.config)
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok())
        .unwrap_or(Value::Null);
    let mut out = Vec::new();
    flatten("", &config, &mut out);
    out.into_iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// `<experiment>/<run>/artifacts` of `mlflow-artifacts:/<...>` or
/// `mlflow-artifacts://host:port/<...>`; None for any other URI.
pub(super) fn artifacts_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path.split_once('/')?.1,
        None => rest.trim_start_matches('/'),
    };
    Some(rest.trim_end_matches('/').to_string())
}

pub(super) fn read_response(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    base: &str,
    method: &str,
    path: &str,
) -> anyhow::Result<Value> {
    let mut response = response.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the MLflow tracking server at {base} ({e}); is it running? \
             (e.g. `mlflow server --host 127.0.0.1 --port 5000`), or check --tracking-uri"
        )
    })?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if !(200..300).contains(&status) {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let what = match (v["error_code"].as_str(), v["message"].as_str()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => text.chars().take(300).collect(),
        };
        bail!("the MLflow server at {base} refused {method} {path}: HTTP {status} {what}");
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| {
        format!("{base}{path} answered with something other than JSON; is it an MLflow server?")
    })
}

pub(super) fn string(v: &Value, what: &str) -> anyhow::Result<String> {
    v.as_str()
        .map(str::to_string)
        .with_context(|| format!("the MLflow server's answer has no {what}"))
}

/// Percent-encoding for a query value.
pub(super) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_map_to_the_artifacts_endpoint() {
        assert_eq!(
            artifacts_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            artifacts_path("mlflow-artifacts://h:5000/1/abc/artifacts/").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(artifacts_path("/tmp/mlruns/1/abc/artifacts"), None);
        assert_eq!(artifacts_path("s3://bucket/1/abc"), None);
    }

    #[test]
    fn the_configuration_flattens_to_dotted_params() {
        let mut out = Vec::new();
        flatten(
            "",
            &json!({"training": {"epochs": 2, "optimizer": {"name": "adam"}}, "tags": [1, 2], "x": null}),
            &mut out,
        );
        let got: Vec<(&str, &str)> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("training.epochs", "2"),
                ("training.optimizer.name", "adam"),
                ("tags", "[1,2]"),
                ("x", "null")
            ]
        );
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
