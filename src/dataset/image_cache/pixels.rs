//! How a split's decoded pixels are laid out and read back: one record per image (`u8` when that
//! is exact, else little-endian `f32`), held in a mapped cache file, in memory, or not at all
//! (decoded from the file again each time); and what decoding a split through the cache gives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::base::memory::MemoryBudget;
use crate::dataset::decode::load_image;
use crate::dataset::error::DatasetError;
use crate::image::Image;

/// How a split's decoded images are kept (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    Mapped,
    Memory,
    Files,
}

/// Where the pixels of a split came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Decoded now.
    Decoded,
    /// Found in the cache directory (an earlier sweep, or another process).
    Cached,
}

/// A split decoded through the cache: which listed files were kept (positions in the index) and
/// which were skipped (with the reason), their pixels, and a warning for the log, if any.
#[derive(Debug)]
pub(in crate::dataset) struct Decoded {
    pub kept: Vec<usize>,
    pub skipped: Vec<(usize, String)>,
    pub pixels: Pixels,
    pub origin: Origin,
    pub warning: Option<String>,
}

/// One stored image: where its values start and whether they are `u8` (else little-endian `f32`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Record {
    pub(super) offset: usize,
    pub(super) u8: bool,
}

/// A split's decoded pixels.
#[derive(Debug)]
pub(in crate::dataset) struct Pixels {
    pub(in crate::dataset) height: usize,
    pub(in crate::dataset) width: usize,
    pub(super) records: Vec<Record>,
    pub(super) storage: Storage,
}

pub(super) enum Storage {
    Mapped {
        map: memmap2::Mmap,
        /// The published cache file; None for a store kept for this process only.
        path: Option<PathBuf>,
    },
    Memory {
        bytes: Vec<u8>,
        /// The budget the bytes were reserved from, given back on drop.
        budget: Arc<MemoryBudget>,
    },
    /// Decode `files[i]` each time image `i` is used.
    Files { files: Vec<Source> },
}

/// A file decoded each time it is used, and its size and modification time when it was first
/// decoded: a file that changes during the sweep is an error, not silently other data.
#[derive(Debug, Clone)]
pub(super) struct Source {
    path: PathBuf,
    stamp: Option<(u64, std::time::SystemTime)>,
}

impl Source {
    pub(in crate::dataset) fn of(path: &Path) -> Source {
        Source {
            path: path.to_path_buf(),
            stamp: stamp(path),
        }
    }
}

fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Mapped { path, map } => {
                write!(f, "Mapped({path:?}, {} bytes)", map.len())
            }
            Storage::Memory { bytes, .. } => write!(f, "Memory({} bytes)", bytes.len()),
            Storage::Files { files } => write!(f, "Files({})", files.len()),
        }
    }
}

impl Drop for Pixels {
    fn drop(&mut self) {
        if let Storage::Memory { bytes, budget } = &self.storage {
            budget.release(bytes.len() as u64);
        }
    }
}

impl Pixels {
    /// Images held in memory as given (no budget): for splits built from decoded images.
    pub(in crate::dataset) fn from_images(height: usize, width: usize, images: &[Image]) -> Pixels {
        let mut records = Vec::with_capacity(images.len());
        let mut bytes = Vec::new();
        for image in images {
            assert_eq!((image.height, image.width), (height, width));
            let (u8, encoded) = encode(image);
            records.push(Record {
                offset: bytes.len(),
                u8,
            });
            bytes.extend_from_slice(&encoded);
        }
        Pixels {
            height,
            width,
            records,
            storage: Storage::Memory {
                bytes,
                budget: Arc::new(MemoryBudget::new(u64::MAX)),
            },
        }
    }

    pub(in crate::dataset) fn residency(&self) -> Residency {
        match self.storage {
            Storage::Mapped { .. } => Residency::Mapped,
            Storage::Memory { .. } => Residency::Memory,
            Storage::Files { .. } => Residency::Files,
        }
    }

    /// Bytes of pixel values held (in memory or mapped); 0 when decoding from the files.
    pub(in crate::dataset) fn stored_bytes(&self) -> usize {
        match &self.storage {
            Storage::Mapped { map, .. } => map.len(),
            Storage::Memory { bytes, .. } => bytes.len(),
            Storage::Files { .. } => 0,
        }
    }

    /// The cache file the pixels are mapped from, if any.
    pub(in crate::dataset) fn file(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Mapped { path, .. } => path.as_deref(),
            _ => None,
        }
    }

    /// Image `i`'s values (0..255, HWC), appended to `out`.
    pub(in crate::dataset) fn extend_into(
        &self,
        i: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), DatasetError> {
        let n = self.height * self.width * 3;
        let bytes: &[u8] = match &self.storage {
            Storage::Mapped { map, .. } => map,
            Storage::Memory { bytes, .. } => bytes,
            Storage::Files { files } => {
                let source = &files[i];
                let changed = || DatasetError::Index {
                    path: source.path.clone(),
                    message: "the file changed or disappeared since the sweep fingerprinted it; \
                              rerun the sweep so that its run keys describe the new content"
                        .into(),
                };
                if stamp(&source.path) != source.stamp {
                    return Err(changed());
                }
                let image = load_image(&source.path, self.height, self.width)?;
                out.extend_from_slice(&image.data);
                return Ok(());
            }
        };
        let r = self.records[i];
        if r.u8 {
            out.extend(bytes[r.offset..r.offset + n].iter().map(|&v| f32::from(v)));
        } else {
            out.extend(
                bytes[r.offset..r.offset + 4 * n]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(())
    }

    /// Image `i` as an `Image`.
    pub(in crate::dataset) fn image(&self, i: usize) -> Result<Image, DatasetError> {
        let mut data = Vec::with_capacity(self.height * self.width * 3);
        self.extend_into(i, &mut data)?;
        Ok(Image {
            height: self.height,
            width: self.width,
            data,
        })
    }
}

/// One image's stored bytes: `u8` values when that is exact (every value a whole number in
/// 0..=255, bit for bit), else little-endian `f32`. The flag says which.
pub(super) fn encode(image: &Image) -> (bool, Vec<u8>) {
    let exact_u8 = image
        .data
        .iter()
        .all(|&v| (0.0..=255.0).contains(&v) && f32::from(v as u8).to_bits() == v.to_bits());
    if exact_u8 {
        (true, image.data.iter().map(|&v| v as u8).collect())
    } else {
        (
            false,
            image.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }
}
