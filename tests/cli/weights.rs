use std::io::{BufRead, Write};
use std::net::TcpListener;

use super::*;

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name)
}

/// The runner with its weights cache in `home` and no other tool's cache visible.
fn isolated(home: &Path) -> assert_cmd::Command {
    let mut cmd = runner();
    cmd.env("RUNNER_HOME", home.join("runner"))
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("KERAS_HOME")
        .env_remove("TORCH_HOME");
    cmd
}

/// Serve `body` once over HTTP on 127.0.0.1; return the URL.
fn serve_once(body: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/vgg16.h5", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    url
}

#[test]
fn fetch_refuses_a_file_with_the_wrong_hash_and_keeps_nothing() {
    let home = tempfile::tempdir().unwrap();
    let url = serve_once(b"these are not the Keras VGG16 weights");
    let out = isolated(home.path())
        .args(["weights", "fetch", "keras:vgg16-imagenet", "--url", &url])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let cache = home.path().join("runner/weights");
    assert!(
        stderr.contains(&format!(
            "{}: MD5 is ",
            cache
                .join("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
                .display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "but keras:vgg16-imagenet is published with md5:6d6bbae143d832006294945121d1f1fc"
        ),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert!(left.is_empty(), "nothing stays in the cache: {left:?}");
}

#[test]
fn an_unknown_name_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let out = isolated(home.path())
        .args(["weights", "fetch", "keras:vgg19"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert_eq!(
        stderr,
        "error: unknown weights \"keras:vgg19\" (known: keras:vgg16-imagenet, torchvision:vgg16-imagenet)\n"
    );
}

/// Known weights that are not downloaded stop the sweep before training, saying which URL to
/// fetch and where to put it.
#[test]
fn missing_known_weights_say_where_to_get_them() {
    let home = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(
        home.path(),
        "[[variants]]\nname = \"pretrained\"\nmodel.channels = [64, 128, 256, 512, 512]\n\
         model.weights = \"torchvision:vgg16-imagenet\"\n",
    );
    let out = isolated(home.path())
        .arg("sweep")
        .arg(&exp)
        .args(["--variant", "pretrained", "--results"])
        .arg(home.path().join("results"))
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let dest = home.path().join("runner/weights/vgg16-397923af.pth");
    assert!(
        stderr.contains(&format!(
            "weights \"torchvision:vgg16-imagenet\" are not downloaded: fetch \
             https://download.pytorch.org/models/vgg16-397923af.pth and save it as {} \
             (or run `runner weights fetch torchvision:vgg16-imagenet`, which also checks its sha256:397923af...)",
            dest.display()
        )),
        "{stderr}"
    );
    let list = isolated(home.path())
        .args(["weights", "list"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&list.get_output().stdout).to_string();
    assert!(
        stdout.contains(&format!(
            "not downloaded (fetch puts it in {})",
            dest.display()
        )),
        "{stdout}"
    );
}

/// `weights import` converts the Keras file to the runner's safetensors, and a sweep trains from
/// it, recording the file's SHA-256.
#[test]
fn imported_weights_train_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let converted = dir.path().join("vgg-small.safetensors");
    let out = isolated(dir.path())
        .args(["weights", "import"])
        .arg(reference("vgg_keras_notop.h5"))
        .arg("-o")
        .arg(&converted)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(stdout.contains("(Keras HDF5)"), "{stdout}");
    assert!(
        stdout.contains("26 tensors, channels [2, 4, 4, 4, 8]"),
        "{stdout}"
    );
    let snippet = stdout
        .lines()
        .find(|l| l.starts_with("model.weights = "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let sha256 = snippet.rsplit('"').nth(1).unwrap().to_string();
    assert_eq!(sha256.len(), 64);

    let exp = tiny_experiment(
        dir.path(),
        &format!(
            "[[variants]]\nname = \"imported\"\ntraining.freeze = [\"block*\"]\n\
             model.channels = [2, 4, 4, 4, 8]\n\
             model.weights = {{ file = \"vgg-small.safetensors\", sha256 = \"{sha256}\" }}\n"
        ),
    );
    isolated(dir.path())
        .arg("sweep")
        .arg(&exp)
        .args([
            "--variant",
            "imported",
            "--seed",
            "0",
            "--epochs",
            "1",
            "--quiet",
            "--results",
        ])
        .arg(dir.path().join("results"))
        .assert()
        .success();
    let run =
        read_json(&cell_dir(&dir.path().join("results"), "tiny", "imported", 0).join("run.json"));
    assert_eq!(run["weights"]["sha256"], sha256.as_str());
}

/// The lecture's two-stage recipe: train the head on a frozen base, then fine-tune block 5
/// starting from that cell's model, which `export-model` writes (the cell's trained-parameter
/// file alone is refused, saying so).
#[test]
fn a_cell_checkpoint_is_loadable_as_the_weights_of_another_experiment() {
    let dir = tempfile::tempdir().unwrap();
    let exp = tiny_experiment(dir.path(), "");
    let results = dir.path().join("results");
    runner()
        .args([
            "sweep",
            "--quiet",
            "--variant",
            "feature_extraction",
            "--seed",
            "0",
        ])
        .arg(&exp)
        .arg("--results")
        .arg(&results)
        .assert()
        .success();
    let stage1 = cell_dir(&results, "tiny", "feature_extraction", 0);
    for file in ["trained.safetensors", "best-trained.safetensors"] {
        assert!(stage1.join(file).exists(), "{file}");
    }
    let stage2 = |weights: &Path| -> PathBuf {
        let text = std::fs::read_to_string(&exp)
            .unwrap()
            .replace("name = \"tiny\"", "name = \"stage2\"")
            .replace(
                "weights = \"none\"",
                &format!("weights = {{ file = {:?} }}", weights.display().to_string()),
            );
        let exp2 = dir.path().join("stage2.toml");
        std::fs::write(&exp2, text).unwrap();
        exp2
    };
    let sweep2 = |exp2: &Path| {
        runner()
            .args([
                "sweep",
                "--quiet",
                "--variant",
                "fine_tuning_aug",
                "--seed",
                "0",
            ])
            .arg(exp2)
            .arg("--results")
            .arg(&results)
            .assert()
    };
    let out = sweep2(&stage2(&stage1.join("trained.safetensors"))).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        stderr.contains("a cell's trained layers only, without the frozen ones")
            && stderr.contains("`runner export-model <the cell's directory> -o model.safetensors`"),
        "{stderr}"
    );
    let model = dir.path().join("stage1-model.safetensors");
    runner()
        .arg("export-model")
        .arg(&stage1)
        .arg("-o")
        .arg(&model)
        .assert()
        .success();
    sweep2(&stage2(&model)).success();
    let record = read_json(&cell_dir(&results, "stage2", "fine_tuning_aug", 0).join("run.json"));
    assert_eq!(record["status"], "done");
    assert_eq!(record["weights"]["format"], "safetensors");
    let sha = record["weights"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(record["key"]["weights"].as_str().unwrap(), sha);
    let bytes = std::fs::read(&model).unwrap();
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, expected);
}
