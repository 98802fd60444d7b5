//! Export of cells to an MLflow tracking server, through its REST API (`/api/2.0/mlflow/...`):
//! one MLflow run per cell, found again by its `runner.run_key` tag, so exporting twice creates
//! nothing twice and a cell exported while it trained is brought up to date.
//!
//! Params are the cell's resolved configuration (run.json's `config`, flattened to dotted keys);
//! metrics are its epochs with the epoch as step (only steps the run lacks are logged: MLflow's
//! histories are append-only, so an epoch a cell trained again after a crash keeps the seconds
//! first logged; every other value is the same bits); tags name
//! its run key, code state, commit, variant, seed, device and status; metrics.csv and run.json
//! are uploaded as artifacts when the server serves artifacts (`mlflow server` does unless
//! started with `--no-serve-artifacts`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::store::{read_metrics, RunRecord, Status};

/// A tracking server at `http(s)://host:port[/prefix]`.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// What exporting one cell did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub run_id: String,
    /// The run was created now (else it existed and was updated).
    pub created: bool,
    /// Metric values logged now (0 when the run had every epoch already).
    pub metrics_logged: usize,
    /// Why artifacts were not uploaded, if they were not.
    pub artifacts_skipped: Option<String>,
}

/// The MLflow status of a cell's status.
pub fn run_status(status: Status) -> &'static str {
    match status {
        Status::Running => "RUNNING",
        Status::Done => "FINISHED",
        Status::Failed | Status::Diverged => "FAILED",
        Status::Interrupted => "KILLED",
    }
}

/// MLflow's limits per `log-batch` request.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;

impl Client {
    pub fn new(tracking_uri: &str) -> anyhow::Result<Self> {
        let base = tracking_uri.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "--tracking-uri {tracking_uri}: give the tracking server's URL, http://HOST:PORT \
                 (a local mlruns folder or database is not supported; serve it with `mlflow server`)"
            );
        }
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Client { base, agent })
    }

    /// One request; a JSON body in and out. An HTTP error status is an error naming the request
    /// and MLflow's own error code and message.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            (_, Some(body)) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(serde_json::to_vec(body)?),
            (_, None) => bail!("{method} {path} without a body"),
        };
        read_response(response, &self.base, method, path)
    }

    /// The id of the experiment named `name`, created if there is none.
    pub fn experiment(&self, name: &str) -> anyhow::Result<String> {
        let path = format!(
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            encode(name)
        );
        match self.call("GET", &path, None) {
            Ok(v) => string(&v["experiment"]["experiment_id"], "experiment_id"),
            Err(e) if format!("{e:#}").contains("RESOURCE_DOES_NOT_EXIST") => {
                let v = self.call(
                    "POST",
                    "/api/2.0/mlflow/experiments/create",
                    Some(&json!({ "name": name })),
                )?;
                string(&v["experiment_id"], "experiment_id")
            }
            Err(e) => Err(e),
        }
    }

    /// The active run of `experiment_id` tagged with `run_key`: its id and artifact URI.
    fn find_run(&self, experiment_id: &str, run_key: &str) -> anyhow::Result<Option<Value>> {
        let v = self.call(
            "POST",
            "/api/2.0/mlflow/runs/search",
            Some(&json!({
                "experiment_ids": [experiment_id],
                "filter": format!("tags.`{RUN_KEY_TAG}` = '{run_key}'"),
                "max_results": 1,
            })),
        )?;
        Ok(v["runs"].as_array().and_then(|r| r.first()).cloned())
    }

    /// The steps already logged for `key` in `run_id`.
    fn logged_steps(&self, run_id: &str, key: &str) -> anyhow::Result<HashSet<i64>> {
        let mut steps = HashSet::new();
        let mut token = String::new();
        loop {
            let mut path = format!(
                "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={}",
                encode(key)
            );
            if !token.is_empty() {
                path.push_str(&format!("&page_token={}", encode(&token)));
            }
            let v = self.call("GET", &path, None)?;
            for m in v["metrics"].as_array().into_iter().flatten() {
                steps.insert(m["step"].as_i64().unwrap_or(0));
            }
            match v["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => return Ok(steps),
            }
        }
    }

    fn log_batch(&self, run_id: &str, field: &str, items: &[Value]) -> anyhow::Result<()> {
        let chunk = if field == "metrics" {
            MAX_METRICS
        } else {
            MAX_PARAMS
        };
        for part in items.chunks(chunk) {
            self.call(
                "POST",
                "/api/2.0/mlflow/runs/log-batch",
                Some(&json!({ "run_id": run_id, field: part })),
            )?;
        }
        Ok(())
    }

    /// Upload `bytes` as artifact `name` under a run's `mlflow-artifacts:` URI.
    fn upload(&self, artifact_uri: &str, name: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let rest = artifacts_path(artifact_uri)
            .with_context(|| format!("artifact URI {artifact_uri} is not served"))?;
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/{rest}/{name}");
        let url = format!("{}{path}", self.base);
        let response = self.agent.put(&url).send(bytes);
        read_response(response, &self.base, "PUT", &path).map(|_| ())
    }

    /// Create or update the MLflow run of the cell in `dir` (its run.json is `record`).
    pub fn export_cell(
        &self,
        experiment_id: &str,
        dir: &Path,
        record: &RunRecord,
    ) -> anyhow::Result<Exported> {
        let run_key = record
            .run_key
            .as_deref()
            .with_context(|| format!("{}: run.json has no run key", dir.display()))?;
        let metrics_file = dir.join("metrics.csv");
        let metrics = read_metrics(&metrics_file)?;
        let started_ms = (super::tensorboard::unix_seconds(&record.started_at) * 1000.0) as i64;
        let tags = tags(record, run_key);

        let found = self.find_run(experiment_id, run_key)?;
        let created = found.is_none();
        let run = match found {
            Some(run) => run,
            None => {
                let v = self.call(
                    "POST",
                    "/api/2.0/mlflow/runs/create",
                    Some(&json!({
                        "experiment_id": experiment_id,
                        "run_name": format!("{}/seed-{}", record.variant, record.seed),
                        "start_time": started_ms,
                        "tags": tags,
                    })),
                )?;
                v["run"].clone()
            }
        };
        let run_id = string(&run["info"]["run_id"], "run_id")?;
        let artifact_uri = run["info"]["artifact_uri"]
            .as_str()
            .unwrap_or("")
            .to_string();

        self.log_batch(&run_id, "params", &params(record))?;
        self.log_batch(&run_id, "tags", &tags)?;
        let learning_rate = super::learning_rate(&record.config.training.optimizer);
        let mut logged: BTreeMap<&str, HashSet<i64>> = BTreeMap::new();
        if !created {
            for tag in super::tensorboard::TAGS {
                logged.insert(tag, self.logged_steps(&run_id, tag)?);
            }
        }
        let mut values = Vec::new();
        let mut wall = started_ms as f64;
        for m in &metrics {
            wall += m.seconds * 1000.0;
            for (key, value) in super::scalars(m, learning_rate) {
                let step = m.epoch as i64;
                if logged.get(key).is_some_and(|s| s.contains(&step)) {
                    continue;
                }
                values.push(json!({
                    "key": key, "value": value, "timestamp": wall as i64, "step": step,
                }));
            }
        }
        self.log_batch(&run_id, "metrics", &values)?;

        let artifacts_skipped = if artifacts_path(&artifact_uri).is_some() {
            for name in ["metrics.csv", "run.json"] {
                let file = dir.join(name);
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                self.upload(&artifact_uri, name, bytes)?;
            }
            None
        } else {
            Some(format!(
                "the server does not serve artifacts (artifact URI {artifact_uri:?}); start \
                 `mlflow server` with --serve-artifacts to upload metrics.csv and run.json"
            ))
        };

        let mut update = json!({ "run_id": run_id, "status": run_status(record.status) });
        if record.status != Status::Running {
            let end = record
                .finished_at
                .as_deref()
                .map(|t| (super::tensorboard::unix_seconds(t) * 1000.0) as i64)
                .unwrap_or(wall as i64);
            update["end_time"] = json!(end);
        }
        self.call("POST", "/api/2.0/mlflow/runs/update", Some(&update))?;
        Ok(Exported {
            run_id,
            created,
            metrics_logged: values.len(),
            artifacts_skipped,
        })
    }
}

/// The tag that finds a cell's run again.
pub const RUN_KEY_TAG: &str = "runner.run_key";

fn tags(record: &RunRecord, run_key: &str) -> Vec<Value> {
    let mut tags = vec![
        (RUN_KEY_TAG, run_key.to_string()),
        ("runner.experiment", record.experiment.clone()),
        ("runner.variant", record.variant.clone()),
        ("runner.seed", record.seed.to_string()),
        ("runner.device", record.device.clone()),
        ("runner.status", record.status.to_string()),
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
fn params(record: &RunRecord) -> Vec<Value> {
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
fn artifacts_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path.split_once('/')?.1,
        None => rest.trim_start_matches('/'),
    };
    Some(rest.trim_end_matches('/').to_string())
}

fn read_response(
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

fn string(v: &Value, what: &str) -> anyhow::Result<String> {
    v.as_str()
        .map(str::to_string)
        .with_context(|| format!("the MLflow server's answer has no {what}"))
}

/// Percent-encoding for a query value.
fn encode(s: &str) -> String {
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
