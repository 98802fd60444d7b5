//! `runner bench --quick`: the three benchmarks run and the table and CSV have their shape
//! (no timing is asserted: speed targets are read from the benchmark, not tested).

use super::runner;

#[test]
fn quick_bench_prints_a_table_and_writes_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("bench.csv");
    let out = runner()
        .args(["bench", "--quick", "--threads", "2", "--csv"])
        .arg(&csv_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("benchmark") && lines[0].contains("GFLOP/CPU-s"));
    let names: Vec<&str> = lines[1..4]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["conv_forward", "finetune_step", "head_step"]);
    assert!(lines[1].contains("32x32"));
    assert_eq!(lines[4], "channels per block: 8-16-32-64-64");

    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for column in [
        "benchmark",
        "image_size",
        "batch",
        "threads",
        "images_per_second",
        "gflop_per_image",
        "gflop_per_cpu_second",
    ] {
        assert!(
            header.iter().any(|h| h == column),
            "no column {column}: {header:?}"
        );
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    let col = |row: &csv::StringRecord, name: &str| -> String {
        row[header.iter().position(|h| h == name).unwrap()].to_string()
    };
    for row in &rows {
        assert_eq!(col(row, "batch"), "2");
        assert_eq!(col(row, "threads"), "2");
        assert!(col(row, "images_per_second").parse::<f64>().unwrap() > 0.0);
    }
    // conv forward of an eighth-width VGG16 on 32x32: sum of 2 * 9 * cin * cout * h * w.
    let expect: f64 = [
        (3, 8, 32),
        (8, 8, 32),
        (8, 16, 16),
        (16, 16, 16),
        (16, 32, 8),
        (32, 32, 8),
        (32, 32, 8),
        (32, 64, 4),
        (64, 64, 4),
        (64, 64, 4),
        (64, 64, 2),
        (64, 64, 2),
        (64, 64, 2),
    ]
    .iter()
    .map(|&(i, o, s)| 18.0 * (i * o * s * s) as f64)
    .sum::<f64>()
        / 1e9;
    let got: f64 = col(&rows[0], "gflop_per_image").parse().unwrap();
    assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
    // Nothing but the CSV is left in the directory (written through a temporary name).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// `--conv-kernel` measures each named kernel: one set of three rows each, named in the `conv`
/// column.
#[test]
fn bench_measures_each_conv_kernel() {
    let out = runner()
        .args(["bench", "--quick", "--threads", "1"])
        .args(["--conv-kernel", "im2col,wino2,wino4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let rows: Vec<(String, String)> = stdout
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("conv_forward") || l.starts_with("finetune_step"))
        .map(|l| {
            let mut f = l.split_whitespace();
            (f.next().unwrap().into(), f.next().unwrap().into())
        })
        .collect();
    let conv: Vec<&str> = rows.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(
        conv,
        ["im2col", "im2col", "wino2", "wino2", "wino4", "wino4"],
        "{stdout}"
    );
}
