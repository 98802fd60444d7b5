//! Logging a sweep to MLflow as it goes (`[mlflow]` in the experiment file): each cell's run is
//! created when the cell starts (RUNNING), every epoch's scalars are logged when it ends, and
//! the cell's files and status when it finishes; the sweep's report follows. The runs are the
//! ones `runner export mlflow` makes (the same `Client` calls), so either can complete the other.
//!
//! Tracking never costs training: a server that cannot be reached when the sweep starts, or that
//! fails later, gives one warning, and the sweep goes on without it (no retries); `runner export
//! mlflow` or the next `runner sweep` uploads what it missed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::config::MlflowSettings;
use crate::store::{read_record, RunRecord, Status};
use crate::train::EpochMetrics;

use super::mlflow::{CellRun, Client};

/// The environment variable MLflow's own clients read; it overrides `[mlflow] tracking_uri`.
pub const TRACKING_URI_ENV: &str = "MLFLOW_TRACKING_URI";

/// A connection to the tracking server for one MLflow experiment; off after its first failure.
pub struct Tracker {
    client: Client,
    uri: String,
    experiment: String,
    runner_experiment: String,
    experiment_id: String,
    off: AtomicBool,
}

/// The trackers by (tracking URI, MLflow experiment); None for a server that could not be used.
type Trackers = HashMap<(String, String), Option<Arc<Tracker>>>;

/// One tracker per (server, experiment) per process, so that a server found down is warned
/// about once and never asked again.
fn trackers() -> &'static Mutex<Trackers> {
    static TRACKERS: OnceLock<Mutex<Trackers>> = OnceLock::new();
    TRACKERS.get_or_init(Default::default)
}

/// The tracking server of `settings`: `$MLFLOW_TRACKING_URI`, else its `tracking_uri`.
pub fn tracking_uri(settings: &MlflowSettings) -> Option<String> {
    std::env::var(TRACKING_URI_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| settings.tracking_uri.clone())
}

impl Tracker {
    /// The tracker of the runner experiment `name` under `settings`, connected (its MLflow
    /// experiment found or created), or None after one warning when the server cannot be used.
    pub fn for_experiment(settings: &MlflowSettings, name: &str) -> Option<Arc<Tracker>> {
        let Some(uri) = tracking_uri(settings) else {
            eprintln!(
                "warning: [mlflow] names no tracking_uri and {TRACKING_URI_ENV} is not set; the \
                 sweep does not log to MLflow"
            );
            return None;
        };
        let experiment = settings.experiment.clone().unwrap_or_else(|| name.into());
        let mut all = trackers().lock().unwrap_or_else(|e| e.into_inner());
        all.entry((uri.clone(), experiment.clone()))
            .or_insert_with(|| Tracker::connect(&uri, &experiment, name).map(Arc::new))
            .clone()
    }

    fn connect(uri: &str, experiment: &str, runner_experiment: &str) -> Option<Tracker> {
        let connected = Client::new(uri).and_then(|client| {
            let id = client.experiment(experiment)?;
            Ok((client, id))
        });
        match connected {
            Ok((client, experiment_id)) => {
                println!("mlflow: logging to experiment \"{experiment}\" at {uri}");
                Some(Tracker {
                    client,
                    uri: uri.into(),
                    experiment: experiment.into(),
                    runner_experiment: runner_experiment.into(),
                    experiment_id,
                    off: AtomicBool::new(false),
                })
            }
            Err(e) => {
                eprintln!(
                    "warning: not logging to MLflow: {e:#}\nthe sweep trains without it; once \
                     the server is up, `{}` uploads the cells (or rerun `runner sweep`)",
                    catch_up_command(uri, experiment, runner_experiment)
                );
                None
            }
        }
    }

    /// Whether it still logs.
    pub fn is_on(&self) -> bool {
        !self.off.load(Ordering::SeqCst)
    }

    /// `Some(value)`, or None after turning the tracker off with one warning.
    fn ok<T>(&self, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                if !self.off.swap(true, Ordering::SeqCst) {
                    eprintln!(
                        "warning: MLflow logging stopped: {e:#}\nthe sweep goes on without it; \
                         `{}` uploads the cells later",
                        catch_up_command(&self.uri, &self.experiment, &self.runner_experiment)
                    );
                }
                None
            }
        }
    }

    /// A cell starts (or resumes) training: its run, RUNNING, with the epochs it has already.
    pub fn start(&self, record: &RunRecord, dir: &Path, metrics: &[EpochMetrics]) -> Option<Live> {
        if !self.is_on() {
            return None;
        }
        let opened = self.client.open_run(&self.experiment_id, dir, record);
        let mut run = self.ok(opened)?;
        let logged = self.client.log_epochs(&mut run, record, metrics);
        self.ok(logged)?;
        self.ok(self.client.set_status(&run, record))?;
        Some(Live { run })
    }

    /// The cell logged by `live` finished an epoch; `metrics` are all its epochs so far.
    pub fn epoch(&self, live: &mut Live, record: &RunRecord, metrics: &[EpochMetrics]) {
        if self.is_on() {
            let logged = self.client.log_epochs(&mut live.run, record, metrics);
            self.ok(logged);
        }
    }

    /// The cell ended and its files are in `dir`: upload them and set the run's status.
    pub fn finish(&self, live: Live, dir: &Path) {
        if !self.is_on() {
            return;
        }
        let closed = read_record(dir)
            .ok_or_else(|| anyhow::anyhow!("{}: no run.json", dir.display()))
            .and_then(|record| self.client.close_run(&live.run, dir, &record));
        if let Some(Some(skipped)) = self.ok(closed) {
            println!("mlflow: artifacts not uploaded: {skipped}");
        }
    }

    /// A cell the sweep skipped because it ended earlier: upload it unless MLflow has it already
    /// (a sweep that ran while the server was down).
    pub fn catch_up(&self, dir: &Path) {
        let Some(record) = read_record(dir) else {
            return;
        };
        if !self.is_on() || record.status == Status::Running {
            return;
        }
        let synced = self.client.sync_cell(&self.experiment_id, dir, &record);
        if let Some(Some(_)) = self.ok(synced) {
            println!(
                "mlflow: uploaded {} / seed {} (ended earlier)",
                record.variant, record.seed
            );
        }
    }

    /// After the sweep wrote its report in `report_dir`: upload it into the run of every cell
    /// in `cells` (as `report/<file>`).
    pub fn upload_report(&self, cells: &[PathBuf], report_dir: &Path) {
        let files: Vec<(String, PathBuf)> = REPORT_FILES
            .iter()
            .map(|name| (format!("report/{name}"), report_dir.join(name)))
            .filter(|(_, path)| path.is_file())
            .collect();
        if files.is_empty() {
            return;
        }
        let mut uploaded = 0;
        for dir in cells {
            let Some(record) = read_record(dir) else {
                continue;
            };
            if !self.is_on() {
                return;
            }
            let found = self.client.existing_run(&self.experiment_id, dir, &record);
            let Some(found) = self.ok(found) else { return };
            let Some(run) = found else { continue };
            if self.ok(self.client.upload_files(&run, &files)).is_none() {
                return;
            }
            uploaded += 1;
        }
        if uploaded > 0 {
            println!("mlflow: the report uploaded to {uploaded} run(s)");
        }
    }
}

/// The report's files uploaded with each run (the HTML page holds its plots).
pub const REPORT_FILES: [&str; 3] = ["report.html", "report.md", "summary.csv"];

/// A cell's run while the cell trains.
pub struct Live {
    run: CellRun,
}

fn catch_up_command(uri: &str, experiment: &str, runner_experiment: &str) -> String {
    let mut command = format!("runner export mlflow {runner_experiment} --tracking-uri {uri}");
    if experiment != runner_experiment {
        command.push_str(&format!(" --mlflow-experiment {experiment}"));
    }
    command
}

/// `[mlflow]` after a sweep's report is written: the report's files into the runs of `cells`
/// (the report is `<code-state>/<experiment>/report`, beside the variants of the cells).
pub fn upload_sweep_report(settings: &MlflowSettings, experiment: &str, cells: &[PathBuf]) {
    let Some(report) = cells.first().and_then(|d| d.ancestors().nth(2)) else {
        return;
    };
    if let Some(tracker) = Tracker::for_experiment(settings, experiment) {
        tracker.upload_report(cells, &report.join("report"));
    }
}
