//! The deterministic synthetic image set used by the offline demo and the tests.
//!
//! The set is written as real PNG and JPEG files in class folders, so the demo exercises the same
//! loader as real data:
//! `<cache_root>/synthetic-<12 hex>/{train,validation}/<class>/<nnnn>.{png,jpg}`, where the hex is
//! a SHA-256 over the spec and `GENERATOR_VERSION`. A set is generated in a temporary sibling
//! directory and renamed into place when complete, so a crash never leaves a partial set under
//! the final name, and an existing set is reused as it is.
//!
//! A spec's `task` chooses the classes: the two-class target task (`TARGET_CLASSES`) or the
//! nine-class source task (`SOURCE_CLASSES`) that a pretraining stage learns first. The source
//! task shares no class with the target task, only kinds of features (outlines, textures, colour
//! contrast), which is what makes it a source for transfer rather than the same task.
//!
//! Every image has its own random stream (`synthetic/<split>/<class>/<i>` under the spec's seed),
//! so the files do not depend on threading and train and validation never share draws.

mod shapes;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ImageEncoder, RgbImage};
use sha2::{Digest, Sha256};

pub use shapes::{coverage, render, Placement, ShapeKind};

use super::error::DatasetError;
use crate::base::hash::hex;
use crate::base::rng;
use crate::config::{SyntheticSpec, SyntheticTask};

/// Bump whenever rendering or file layout changes, so that old cached sets are not reused.
/// (Adding kinds does not change how existing kinds render: the target set keeps its version.)
pub const GENERATOR_VERSION: u32 = 2;

/// Version of the source task's class list; part of a source set's description, so a change
/// of its classes gives a new directory and a new fingerprint.
pub const SOURCE_TASK_VERSION: u32 = 1;

/// The two classes of the demo's target task, in label order (folder names sort the same way).
pub const TARGET_CLASSES: [ShapeKind; 2] = [ShapeKind::Checker, ShapeKind::Square];

/// The source task: plain shapes and textured discs, in label order (sorted folder names).
/// Neither target class is among them.
pub const SOURCE_CLASSES: [ShapeKind; 9] = [
    ShapeKind::CheckerDisc,
    ShapeKind::Circle,
    ShapeKind::Cross,
    ShapeKind::Dots,
    ShapeKind::Grid,
    ShapeKind::Hexagon,
    ShapeKind::Ring,
    ShapeKind::Stripes,
    ShapeKind::Triangle,
];

/// The classes a generated set of `task` shows.
pub fn classes(task: SyntheticTask) -> &'static [ShapeKind] {
    match task {
        SyntheticTask::Target => &TARGET_CLASSES,
        SyntheticTask::Source => &SOURCE_CLASSES,
    }
}

/// JPEG quality of the JPEG files in the set.
const JPEG_QUALITY: u8 = 90;

/// Generate the data set of `spec` under `cache_root` unless it already exists, and return
/// the (train, validation) class-folder directories.
pub fn ensure(spec: &SyntheticSpec, cache_root: &Path) -> Result<(PathBuf, PathBuf), DatasetError> {
    check(spec)?;
    let description = describe(spec);
    let name = format!(
        "synthetic-{}",
        &hex(&Sha256::digest(description.as_bytes()))[..12]
    );
    let root = cache_root.join(&name);
    let dirs = (root.join("train"), root.join("validation"));
    if root.is_dir() {
        return Ok(dirs);
    }
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DatasetError::Write { path, source }
    };
    fs::create_dir_all(cache_root).map_err(write(cache_root))?;
    // Unique per process and call, so concurrent generators never share a temporary directory.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let partial = cache_root.join(format!(
        ".{name}.partial-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    if partial.exists() {
        fs::remove_dir_all(&partial).map_err(write(&partial))?;
    }
    let generated = generate(spec, &partial)
        .and_then(|()| fs::write(partial.join("spec.txt"), &description).map_err(write(&partial)));
    if let Err(e) = generated {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    if let Err(source) = fs::rename(&partial, &root) {
        let _ = fs::remove_dir_all(&partial);
        // Another process finished the same set first: use theirs.
        if !root.is_dir() {
            return Err(DatasetError::Write { path: root, source });
        }
    }
    Ok(dirs)
}

fn check(spec: &SyntheticSpec) -> Result<(), DatasetError> {
    let problem = if spec.size < 8 {
        Some(format!(
            "size must be at least 8 pixels (got {})",
            spec.size
        ))
    } else if spec.train_per_class == 0 || spec.validation_per_class == 0 {
        Some("train_per_class and validation_per_class must be at least 1".to_string())
    } else {
        None
    };
    match problem {
        Some(message) => Err(DatasetError::InvalidSynthetic { message }),
        None => Ok(()),
    }
}

/// The canonical description hashed into the directory name and kept beside the images.
fn describe(spec: &SyntheticSpec) -> String {
    let names: Vec<&str> = classes(spec.task).iter().map(|k| k.folder_name()).collect();
    // The target set's description is what it was before tasks existed, so its cached
    // directory keeps its name.
    let task = match spec.task {
        SyntheticTask::Target => String::new(),
        SyntheticTask::Source => format!("task = source v{SOURCE_TASK_VERSION}\n"),
    };
    format!(
        "runner synthetic data set\ngenerator_version = {GENERATOR_VERSION}\n{task}seed = {}\n\
         train_per_class = {}\nvalidation_per_class = {}\nsize = {}\nclasses = {}\n",
        spec.seed,
        spec.train_per_class,
        spec.validation_per_class,
        spec.size,
        names.join(", ")
    )
}

/// One file to write: split, class and index within the class.
struct Job {
    split: &'static str,
    kind: ShapeKind,
    index: usize,
}

/// How file `index` of a class is stored: about one in three JPEG, a few grey-scale PNGs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Png,
    GreyPng,
    Jpeg,
}

fn encoding(index: usize) -> Encoding {
    if index % 3 == 2 {
        Encoding::Jpeg
    } else if index % 16 == 1 {
        Encoding::GreyPng
    } else {
        Encoding::Png
    }
}

/// Write every image of `spec` under `dir`, on all cores.
fn generate(spec: &SyntheticSpec, dir: &Path) -> Result<(), DatasetError> {
    let mut jobs = Vec::new();
    for (split, count) in [
        ("train", spec.train_per_class),
        ("validation", spec.validation_per_class),
    ] {
        for &kind in classes(spec.task) {
            let class_dir = dir.join(split).join(kind.folder_name());
            fs::create_dir_all(&class_dir).map_err(|source| DatasetError::Write {
                path: class_dir,
                source,
            })?;
            jobs.extend((0..count).map(|index| Job { split, kind, index }));
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = jobs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().try_for_each(|job| write_one(spec, dir, job)))
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })
}

fn write_one(spec: &SyntheticSpec, dir: &Path, job: &Job) -> Result<(), DatasetError> {
    let class = job.kind.folder_name();
    let purpose = format!("synthetic/{}/{class}/{}", job.split, job.index);
    let image = render(job.kind, spec.size, &mut rng::stream(spec.seed, &purpose));
    let encoding = encoding(job.index);
    let ext = if encoding == Encoding::Jpeg {
        "jpg"
    } else {
        "png"
    };
    let path = dir
        .join(job.split)
        .join(class)
        .join(format!("{:04}.{ext}", job.index));
    let bytes = encode(&image, encoding).map_err(|e| DatasetError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    fs::write(&path, bytes).map_err(|source| DatasetError::Write { path, source })
}

fn encode(image: &RgbImage, encoding: Encoding) -> image::ImageResult<Vec<u8>> {
    let (w, h) = image.dimensions();
    let mut bytes = Vec::new();
    match encoding {
        Encoding::Png => PngEncoder::new(&mut bytes).write_image(
            image.as_raw(),
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?,
        Encoding::GreyPng => {
            let grey = image::DynamicImage::ImageRgb8(image.clone()).into_luma8();
            PngEncoder::new(&mut bytes).write_image(
                grey.as_raw(),
                w,
                h,
                image::ExtendedColorType::L8,
            )?
        }
        Encoding::Jpeg => JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).write_image(
            image.as_raw(),
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?,
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
