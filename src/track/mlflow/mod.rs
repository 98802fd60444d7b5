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
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::store::{read_metrics, RunRecord, Status};
use crate::train::EpochMetrics;
use wire::{artifacts_path, encode, params, read_response, string, tags};

mod wire;

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

    /// Create or update the MLflow run of the cell in `dir` (its run.json is `record`): find or
    /// create it, log its params, tags and the epochs it lacks, upload its files and set its
    /// status.
    pub fn export_cell(
        &self,
        experiment_id: &str,
        dir: &Path,
        record: &RunRecord,
    ) -> anyhow::Result<Exported> {
        let metrics = read_metrics(&dir.join("metrics.csv"))?;
        let mut run = self.open_run(experiment_id, dir, record)?;
        let metrics_logged = self.log_epochs(&mut run, record, &metrics)?;
        let artifacts_skipped = self.close_run(&run, dir, record)?;
        Ok(Exported {
            run_id: run.run_id,
            created: run.created,
            metrics_logged,
            artifacts_skipped,
        })
    }

    /// Bring the run of a finished cell up to date unless MLflow already has it with the cell's
    /// status (then nothing is sent). Returns what was done, or None when nothing was needed.
    pub fn sync_cell(
        &self,
        experiment_id: &str,
        dir: &Path,
        record: &RunRecord,
    ) -> anyhow::Result<Option<Exported>> {
        let run_key = run_key_of(dir, record)?;
        let found = self.find_run(experiment_id, run_key)?;
        let current = found.is_some_and(|run| {
            run["info"]["status"].as_str() == Some(run_status(record.status))
                && record.status != Status::Running
        });
        if current {
            return Ok(None);
        }
        self.export_cell(experiment_id, dir, record).map(Some)
    }

    /// The run of the cell whose run.json is `record`, when MLflow has one (nothing is logged).
    pub fn existing_run(
        &self,
        experiment_id: &str,
        dir: &Path,
        record: &RunRecord,
    ) -> anyhow::Result<Option<CellRun>> {
        let found = self.find_run(experiment_id, run_key_of(dir, record)?)?;
        found
            .map(|run| {
                Ok(CellRun {
                    run_id: string(&run["info"]["run_id"], "run_id")?,
                    artifact_uri: run["info"]["artifact_uri"].as_str().unwrap_or("").into(),
                    created: false,
                    logged: BTreeMap::new(),
                })
            })
            .transpose()
    }

    /// The run of the cell whose run.json is `record`, found by its run key or created, with
    /// the cell's params and tags logged. `dir` is only named in errors.
    pub fn open_run(
        &self,
        experiment_id: &str,
        dir: &Path,
        record: &RunRecord,
    ) -> anyhow::Result<CellRun> {
        let run_key = run_key_of(dir, record)?;
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
        let mut logged: BTreeMap<&'static str, HashSet<i64>> = BTreeMap::new();
        if !created {
            for tag in super::tensorboard::TAGS {
                logged.insert(tag, self.logged_steps(&run_id, tag)?);
            }
        }
        Ok(CellRun {
            run_id,
            artifact_uri,
            created,
            logged,
        })
    }

    /// Log the epochs of `metrics` (all the cell's epochs so far) that the run lacks, each
    /// scalar with the epoch as step and the time the epoch ended (the cell's start plus the
    /// seconds of its epochs). Returns the number of values logged.
    pub fn log_epochs(
        &self,
        run: &mut CellRun,
        record: &RunRecord,
        metrics: &[EpochMetrics],
    ) -> anyhow::Result<usize> {
        let learning_rate = super::learning_rate(&record.config.training.optimizer);
        let mut values = Vec::new();
        let mut wall = super::tensorboard::unix_seconds(&record.started_at) * 1000.0;
        let mut new_steps = Vec::new();
        for m in metrics {
            wall += m.seconds * 1000.0;
            let step = m.epoch as i64;
            for (key, value) in super::scalars(m, learning_rate) {
                if run.logged.get(key).is_some_and(|s| s.contains(&step)) {
                    continue;
                }
                new_steps.push((key, step));
                values.push(json!({
                    "key": key, "value": value, "timestamp": wall as i64, "step": step,
                }));
            }
        }
        self.log_batch(&run.run_id, "metrics", &values)?;
        for (key, step) in new_steps {
            run.logged.entry(key).or_default().insert(step);
        }
        Ok(values.len())
    }

    /// Set the run's status (RUNNING, or the cell's status with its end time) and its
    /// `runner.status` tag.
    pub fn set_status(&self, run: &CellRun, record: &RunRecord) -> anyhow::Result<()> {
        let tag = json!({ "key": STATUS_TAG, "value": record.status.to_string() });
        self.log_batch(&run.run_id, "tags", &[tag])?;
        let mut update = json!({ "run_id": run.run_id, "status": run_status(record.status) });
        if record.status != Status::Running {
            let end = record.finished_at.as_deref().unwrap_or(&record.started_at);
            update["end_time"] = json!((super::tensorboard::unix_seconds(end) * 1000.0) as i64);
        }
        self.call("POST", "/api/2.0/mlflow/runs/update", Some(&update))?;
        Ok(())
    }

    /// Upload the cell's metrics.csv and run.json from `dir` and set the run's status from
    /// `record`. Returns why the artifacts were not uploaded, if they were not.
    pub fn close_run(
        &self,
        run: &CellRun,
        dir: &Path,
        record: &RunRecord,
    ) -> anyhow::Result<Option<String>> {
        let files = ["metrics.csv", "run.json"].map(|name| (name.to_string(), dir.join(name)));
        let skipped = self.upload_files(run, &files)?;
        self.set_status(run, record)?;
        Ok(skipped)
    }

    /// Upload each `(artifact name, file)` into the run's artifacts. Returns why nothing was
    /// uploaded when the server does not serve artifacts.
    pub fn upload_files(
        &self,
        run: &CellRun,
        files: &[(String, PathBuf)],
    ) -> anyhow::Result<Option<String>> {
        if artifacts_path(&run.artifact_uri).is_none() {
            return Ok(Some(format!(
                "the server does not serve artifacts (artifact URI {:?}); start `mlflow server` \
                 with --serve-artifacts to upload metrics.csv and run.json",
                run.artifact_uri
            )));
        }
        for (name, file) in files {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            self.upload(&run.artifact_uri, name, bytes)?;
        }
        Ok(None)
    }
}

/// The MLflow run of one cell, as `Client::open_run` found or created it.
#[derive(Debug, Clone)]
pub struct CellRun {
    pub run_id: String,
    artifact_uri: String,
    /// The run was created now (else it existed).
    pub created: bool,
    /// The steps each metric has in MLflow (append-only histories: never logged twice).
    logged: BTreeMap<&'static str, HashSet<i64>>,
}

fn run_key_of<'a>(dir: &Path, record: &'a RunRecord) -> anyhow::Result<&'a str> {
    record
        .run_key
        .as_deref()
        .with_context(|| format!("{}: run.json has no run key", dir.display()))
}

/// The tag that finds a cell's run again.
pub const RUN_KEY_TAG: &str = "runner.run_key";
/// The tag with the cell's status (as run.json says it).
pub const STATUS_TAG: &str = "runner.status";
