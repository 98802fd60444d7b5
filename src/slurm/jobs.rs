//! The Slurm commands `runner` uses: sbatch, squeue, scancel, scontrol. Each is run as a
//! process; its refusal is an error quoting its own words.

use std::process::Command;

use anyhow::{bail, Context};

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(program);
            p.is_file()
        })
    })
}

/// Fail unless the Slurm client commands are on PATH.
pub fn require_client() -> anyhow::Result<()> {
    for program in ["sbatch", "squeue", "scancel"] {
        if !on_path(program) {
            bail!(
                "`{program}` is not on PATH: --slurm submits through the Slurm client commands \
                 (on Debian: apt-get install slurm-client; scripts/slurm-dev.sh start runs a \
                 single-node cluster for trying it); nothing was submitted"
            );
        }
    }
    Ok(())
}

/// Submit `script` with `options`; the job id (`--parsable`).
pub fn sbatch(options: &[String], script: &str) -> anyhow::Result<String> {
    let mut child = Command::new("sbatch")
        .arg("--parsable")
        .args(options)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run sbatch")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("sbatch: no stdin")?;
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output().context("cannot run sbatch")?;
    if !out.status.success() {
        bail!(
            "sbatch refused the job ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    let id = text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id: {:?}", text.trim());
    }
    Ok(id)
}

/// One job, or one task of a job array, as squeue lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// This job's (or task's) own id.
    pub id: String,
    /// The array's id, or the job's own id outside arrays.
    pub array_job: String,
    /// The array task index; `None` outside arrays.
    pub task: Option<u32>,
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...
    pub state: String,
    pub node: String,
    pub reason: String,
}

impl JobState {
    /// Whether the job may still run (pending, running, requeued, suspended, ...).
    pub fn active(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "COMPLETED"
                | "FAILED"
                | "CANCELLED"
                | "TIMEOUT"
                | "NODE_FAIL"
                | "OUT_OF_MEMORY"
                | "BOOT_FAIL"
                | "DEADLINE"
                | "PREEMPTED"
                | "SPECIAL_EXIT"
        )
    }

    /// `1234_5` for an array task, `1234` otherwise.
    pub fn display_id(&self) -> String {
        match self.task {
            Some(t) => format!("{}_{t}", self.array_job),
            None => self.array_job.clone(),
        }
    }
}

/// The jobs named `name` that squeue still knows (finished ones too, while the controller keeps
/// them), one line per array task.
pub fn squeue(name: &str) -> anyhow::Result<Vec<JobState>> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "--states=all", "--name", name])
        .args(["-o", "%A|%F|%K|%T|%N|%r"])
        .output()
        .context("cannot run squeue")?;
    if !out.status.success() {
        bail!(
            "squeue failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_squeue(text: &str) -> Vec<JobState> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split('|').collect();
            if f.len() < 6 {
                return None;
            }
            Some(JobState {
                id: f[0].to_string(),
                array_job: f[1].to_string(),
                task: f[2].parse().ok(),
                state: f[3].to_string(),
                node: f[4].to_string(),
                reason: f[5].to_string(),
            })
        })
        .collect()
}

/// Cancel these jobs (`1234`, `1234_5`).
pub fn scancel(ids: &[String]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let out = Command::new("scancel")
        .args(ids)
        .output()
        .context("cannot run scancel")?;
    if !out.status.success() {
        bail!(
            "scancel failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Put this job back in the queue (a task that stopped early on Slurm's signal).
pub fn requeue(id: &str) -> anyhow::Result<()> {
    let out = Command::new("scontrol")
        .args(["requeue", id])
        .output()
        .context("cannot run scontrol")?;
    if !out.status.success() {
        bail!(
            "scontrol requeue {id} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_give_array_tasks_and_plain_jobs() {
        let jobs = parse_squeue("12|10|2|RUNNING|node1|None\n9|9|N/A|PENDING||Dependency\n");
        assert_eq!(jobs[0].display_id(), "10_2");
        assert_eq!(jobs[0].node, "node1");
        assert!(jobs[0].active());
        assert_eq!(jobs[1].task, None);
        assert_eq!(jobs[1].display_id(), "9");
        assert_eq!(jobs[1].reason, "Dependency");
        let done = JobState {
            state: "COMPLETED".into(),
            ..jobs[1].clone()
        };
        assert!(!done.active());
    }
}
