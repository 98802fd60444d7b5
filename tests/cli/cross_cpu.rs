//! The same run key gives the same bits on another x86-64 CPU. One cell is trained three ways and
//! compared byte for byte:
//! - natively;
//! - natively, but seeing another CPU's caches: a mount namespace lays a made-up
//!   `/sys/devices/system/cpu` (a 32 KiB L1 data cache, as on AMD EPYC, where an Intel Xeon
//!   reports 48 KiB) over the real one. This is what `gemm` reads to choose how it cuts long
//!   reductions, and with it the old kernels trained a different model;
//! - under `qemu-x86_64 -cpu Haswell-v4` (AVX2 and FMA, no AVX-512), on one thread.

use std::path::Path;

use super::*;

/// A narrow VGG whose block 5 has 512 channels, so that two of its convolutions reduce over
/// 4608 values (several depth blocks), fine-tuned from block 5; its head is
/// small enough to hit the matrix shapes that `gemm` vectorises along the reduction; block 1's
/// second convolution runs Winograd F(4x4) and block 2's F(2x2) (`ConvKernel::for_layer`), whose
/// transforms are compiled for AVX-512 natively and for AVX2 under qemu.
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
channels = [16, 16, 8, 8, 512]
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
fn outcome(results: &Path) -> (Vec<String>, Files, String) {
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

/// A CPU tree for sysfs with one CPU whose caches are L1d 32 KiB 8-way (an AMD EPYC's), or
/// 48 KiB 12-way (an Intel Xeon's) where this machine's L1 is 32 KiB already, L2 512 KiB 8-way,
/// L3 16 MiB 16-way.
fn fake_cpu_tree(root: &Path) {
    let host_l1 = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index0/size")
        .unwrap_or_default();
    let (l1, l1_ways) = if host_l1.trim() == "32K" {
        ("48K", 12)
    } else {
        ("32K", 8)
    };
    for (index, level, kind, size, ways) in [
        (0, 1, "Data", l1, l1_ways),
        (1, 2, "Unified", "512K", 8),
        (2, 3, "Unified", "16384K", 16),
    ] {
        let dir = root.join(format!("cpu0/cache/index{index}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, value) in [
            ("level", level.to_string()),
            ("type", kind.to_string()),
            ("size", size.to_string()),
            ("ways_of_associativity", ways.to_string()),
            ("coherency_line_size", "64".to_string()),
            ("shared_cpu_list", "0".to_string()),
        ] {
            std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
        }
    }
}

/// Whether this process may make a mount namespace (root with `unshare`).
fn can_unshare() -> bool {
    std::process::Command::new("unshare")
        .args(["-m", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_cell_is_bitwise_identical_with_other_cache_sizes() {
    if !cfg!(target_os = "linux") || !can_unshare() {
        println!("skipped: cannot make a mount namespace here (needs Linux, root and util-linux's unshare)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let native = dir.path().join("native");
    runner()
        .args(["sweep", "--no-report", "--results"])
        .arg(&native)
        .arg(&exp)
        .assert()
        .success();
    let cpu = dir.path().join("cpu");
    fake_cpu_tree(&cpu);
    let other = dir.path().join("other");
    let mut unshare = std::process::Command::new("unshare");
    unshare
        .args(["-m", "sh", "-c"])
        .arg(r#"mount --bind "$1" /sys/devices/system/cpu && shift && exec "$@""#)
        .arg("sh")
        .arg(&cpu);
    sweep_through(unshare, &exp, &other, "with other caches");
    let (m1, t1, _) = outcome(&native);
    let (m2, t2, _) = outcome(&other);
    assert_same((&m1, &t1), (&m2, &t2), "with other cache sizes");
}

/// `runner sweep` of `exp` into `results`, started through `wrapper` (a command that runs the
/// program it is given with its arguments); it must succeed.
fn sweep_through(mut wrapper: std::process::Command, exp: &Path, results: &Path, what: &str) {
    let out = wrapper
        .arg(assert_cmd::cargo::cargo_bin("runner"))
        .args(["sweep", "--no-report", "--results"])
        .arg(results)
        .arg(exp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

type Files = Vec<(String, Vec<u8>)>;

/// Same metrics and the same files, byte for byte (named, not dumped, when they differ).
fn assert_same(a: (&Vec<String>, &Files), b: (&Vec<String>, &Files), what: &str) {
    assert!(!a.1.is_empty(), "the cell wrote no safetensors file");
    assert_eq!(a.0, b.0, "metrics differ {what}");
    let names = |f: &Files| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(a.1), names(b.1), "different files {what}");
    for ((name, x), (_, y)) in a.1.iter().zip(b.1) {
        assert!(x == y, "{name} differs {what}");
    }
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
    let mut emulator = std::process::Command::new(qemu);
    emulator
        .args(["-cpu", "Haswell-v4"])
        .env("RAYON_NUM_THREADS", "1");
    sweep_through(emulator, &exp, &emulated, "under qemu");
    let (m1, t1, isa1) = outcome(&native);
    let (m2, t2, isa2) = outcome(&emulated);
    assert_eq!(isa2, "avx2+fma", "qemu's Haswell-v4 has AVX2 and FMA only");
    if isa1 == isa2 {
        println!("note: this CPU's kernels are {isa1} too: only cache sizes and threads differ");
    }
    assert_same(
        (&m1, &t1),
        (&m2, &t2),
        &format!("between {isa1} and {isa2}"),
    );
}
