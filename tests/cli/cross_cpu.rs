//! The same run key gives the same bits on another x86-64 CPU: a cell trained natively and under
//! `qemu-x86_64 -cpu Haswell-v4` (AVX2 and FMA, no AVX-512, other cache sizes, one thread).

use std::path::Path;

use super::*;

/// A narrow VGG whose block 5 has 512 channels, so that two of its convolutions reduce over
/// 4608 values (several depth blocks), fine-tuned from block 5; its first layer and its head are
/// small enough to hit the matrix shapes that `gemm` vectorises along the reduction.
fn experiment(dir: &Path) -> std::path::PathBuf {
    let text = r#"
name = "xcpu"
seeds = [0]

[dataset]
image_size = [32, 32]
batch_size = 8

[dataset.synthetic]
seed = 5
train_per_class = 8
validation_per_class = 4
size = 36

[model]
channels = [4, 8, 8, 8, 512]
weights = "none"
head = { units = [16] }

[training]
epochs = 2
optimizer = "adam"
learning_rate = 1e-3

[[variants]]
name = "fine_tuning"
training.trainable_from = "block5_conv1"
"#;
    let path = dir.join("xcpu.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn qemu() -> Option<std::path::PathBuf> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return None;
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("qemu-x86_64"))
            .find(|p| p.is_file())
    })
}

/// metrics.csv without the seconds column, every safetensors file by name, and run.json's
/// record of the kernels' instruction set.
fn outcome(results: &Path) -> (Vec<String>, Vec<(String, Vec<u8>)>, String) {
    let cell = cell_dir(results, "xcpu", "fine_tuning", 0);
    let metrics = std::fs::read_to_string(cell.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect();
    let mut tensors: Vec<(String, Vec<u8>)> = std::fs::read_dir(&cell)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    tensors.sort();
    let run = read_json(&cell.join("run.json"));
    let isa = run["environment"]["kernels"]["isa"]
        .as_str()
        .unwrap_or_else(|| panic!("run.json records no kernel ISA: {run}"))
        .to_string();
    (metrics, tensors, isa)
}

#[test]
fn a_cell_is_bitwise_identical_under_an_avx2_only_cpu() {
    let Some(qemu) = qemu() else {
        println!("skipped: qemu-x86_64 not found on PATH (Debian's qemu-user package; .ci/run installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let native = dir.path().join("native");
    runner()
        .args(["sweep", "--no-report", "--results"])
        .arg(&native)
        .arg(&exp)
        .assert()
        .success();
    let emulated = dir.path().join("emulated");
    let out = std::process::Command::new(qemu)
        .args(["-cpu", "Haswell-v4"])
        .arg(assert_cmd::cargo::cargo_bin("runner"))
        .args(["sweep", "--no-report", "--results"])
        .arg(&emulated)
        .arg(&exp)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "under qemu: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (m1, t1, isa1) = outcome(&native);
    let (m2, t2, isa2) = outcome(&emulated);
    assert_eq!(isa2, "avx2+fma", "qemu's Haswell-v4 has AVX2 and FMA only");
    if isa1 == isa2 {
        println!("note: this CPU's kernels are {isa1} too: only cache sizes and threads differ");
    }
    assert!(!t1.is_empty(), "the cell wrote no safetensors file");
    assert_eq!(m1, m2, "metrics differ between {isa1} and {isa2}");
    let names: Vec<&String> = t1.iter().map(|(n, _)| n).collect();
    assert_eq!(names, t2.iter().map(|(n, _)| n).collect::<Vec<_>>());
    for ((name, a), (_, b)) in t1.iter().zip(&t2) {
        assert!(a == b, "{name} differs between {isa1} and {isa2}");
    }
}
