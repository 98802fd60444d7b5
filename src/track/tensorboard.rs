//! TensorBoard event files: a cell's per-epoch scalars in the format TensorBoard reads, so that
//! `tensorboard --logdir results/<code-state>/<experiment>` shows every cell as a run named
//! `<variant>/seed-<n>`.
//!
//! The file is a TFRecord stream (per record: u64 length, masked CRC32C of the length, the bytes,
//! masked CRC32C of the bytes) of `Event` protocol buffers. Only five protobuf fields are written
//! (Event.wall_time, .step, .file_version, .summary; Summary.Value.tag, .simple_value), so they
//! are encoded here by hand: a protobuf crate and its code generator would be far larger than the
//! encoder. CRC32C (Castagnoli) is not among the dependencies (crc32fast is the IEEE polynomial),
//! and its table is a few lines.
//!
//! The file is rewritten whole from the cell's metrics after every epoch (write to a temporary
//! name, then rename), so it always says what metrics.csv says: a resumed cell repeats no step.

use std::path::{Path, PathBuf};

use std::io::Write;

use crate::train::EpochMetrics;
use anyhow::Context;

/// The event file's name in a cell's directory. Fixed (TensorBoard only asks for "tfevents" in
/// the name), so that rewriting replaces it instead of adding a second run of the same steps.
pub const EVENTS_FILE: &str = "events.out.tfevents.0.runner";

/// The tags written for every epoch, in this order (those of [`super::scalars`]).
pub const TAGS: [&str; 6] = [
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
];

/// Write `dir/EVENTS_FILE` for `metrics` (one step per epoch, the step is the epoch number).
/// `started` is the cell's start as Unix seconds; an epoch's wall time is the start plus the
/// seconds of the epochs up to and including it, so the same metrics give the same bytes.
pub fn write(
    dir: &Path,
    metrics: &[EpochMetrics],
    learning_rate: f64,
    started: f64,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(EVENTS_FILE);
    // Not `base::fs::write_atomic`: its temporary name keeps the file's name, and TensorBoard
    // reads every file with "tfevents" in its name, so a live TensorBoard (or one started after
    // a kill -9 left the temporary file behind) would show every step twice.
    let tmp = dir.join(format!(".tensorboard.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&events(metrics, learning_rate, started))?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The bytes of the event file for `metrics`.
pub fn events(metrics: &[EpochMetrics], learning_rate: f64, started: f64) -> Vec<u8> {
    let mut out = Vec::new();
    record(&mut out, &version_event(started));
    let mut wall = started;
    for m in metrics {
        wall += m.seconds;
        let scalars: Vec<(&str, f32)> = super::scalars(m, learning_rate)
            .iter()
            .map(|(tag, v)| (*tag, *v as f32))
            .collect();
        record(&mut out, &scalar_event(wall, m.epoch as i64, &scalars));
    }
    out
}

/// The Unix seconds of an RFC 3339 time as run.json records it (`started_at`); 0 if unreadable.
pub fn unix_seconds(rfc3339: &str) -> f64 {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The first event of every file: `file_version: "brain.Event:2"`.
fn version_event(wall_time: f64) -> Vec<u8> {
    let mut e = Vec::new();
    field_double(&mut e, 1, wall_time);
    field_bytes(&mut e, 3, b"brain.Event:2");
    e
}

/// `Event { wall_time, step, summary { value { tag, simple_value } ... } }`.
fn scalar_event(wall_time: f64, step: i64, scalars: &[(&str, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in scalars {
        let mut value = Vec::new();
        field_bytes(&mut value, 1, tag.as_bytes());
        key(&mut value, 2, WIRE_FIXED32);
        value.extend_from_slice(&v.to_le_bytes());
        field_bytes(&mut summary, 1, &value);
    }
    let mut e = Vec::new();
    field_double(&mut e, 1, wall_time);
    key(&mut e, 2, WIRE_VARINT);
    varint(&mut e, step as u64);
    field_bytes(&mut e, 5, &summary);
    e
}

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_BYTES: u64 = 2;
const WIRE_FIXED32: u64 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn field_double(out: &mut Vec<u8>, field: u64, v: f64) {
    key(out, field, WIRE_FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, WIRE_BYTES);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data.
fn record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// TFRecord's CRC mask: rotate right by 15 bits and add a constant.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bytewise with a 256-entry table.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tags_are_the_scalars_names() {
        let m = EpochMetrics {
            epoch: 1,
            train_loss: 0.0,
            train_acc: 0.0,
            val_loss: 0.0,
            val_acc: 0.0,
            seconds: 0.0,
        };
        let names: Vec<&str> = crate::track::scalars(&m, 0.0).iter().map(|s| s.0).collect();
        assert_eq!(names, TAGS);
    }

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // The CRC catalogue's check value for CRC-32C, and RFC 3720 (iSCSI) B.4's vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    #[allow(clippy::manual_rotate)]
    fn records_are_framed_and_masked_as_tfrecord() {
        let mut out = Vec::new();
        record(&mut out, b"abc");
        assert_eq!(out.len(), 8 + 4 + 3 + 4);
        assert_eq!(&out[..8], &3u64.to_le_bytes());
        assert_eq!(&out[12..15], b"abc");
        // The mask: rotate right 15, add 0xa282ead8, spelled as TensorFlow's crc32c::Mask does.
        let crc = crc32c(b"abc");
        let masked = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(&out[15..], &masked.to_le_bytes());
        assert_eq!(
            &out[8..12],
            &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes()
        );
    }

    #[test]
    fn events_are_byte_for_byte_those_of_tensorboards_own_writer() {
        // Written by the PyPI `tensorboard` package (2.21): its `RecordWriter` framing
        // `event_pb2.Event(wall_time=1700000000.5, file_version="brain.Event:2")`, then an
        // Event with wall_time 1700000002.5, step 3 and simple values loss 0.25, val_accuracy
        // 0.875.
        let mut out = Vec::new();
        record(&mut out, &version_event(1_700_000_000.5));
        assert_eq!(
            hex(&out),
            "1800000000000000a37f4b220900002040fc54d9411a0d627261696e2e4576656e743a322b353110"
        );
        let mut out = Vec::new();
        let event = scalar_event(
            1_700_000_002.5,
            3,
            &[("loss", 0.25), ("val_accuracy", 0.875)],
        );
        record(&mut out, &event);
        assert_eq!(
            hex(&out),
            "2f000000000000006d5d1d50090000a040fc54d94110032a220a0b0a046c6f7373150000803e\
             0a130a0c76616c5f6163637572616379150000603f67539b42"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_file_holds_one_event_per_epoch_after_the_version() {
        let m = |epoch| EpochMetrics {
            epoch,
            train_loss: 0.5,
            train_acc: 0.75,
            val_loss: 0.25,
            val_acc: 0.875,
            seconds: 2.0,
        };
        let bytes = events(&[m(1), m(2)], 1e-3, 100.0);
        let mut records = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            records.push(&bytes[at + 12..at + 12 + len]);
            at += 12 + len + 4;
        }
        assert_eq!(at, bytes.len());
        assert_eq!(records.len(), 3);
        assert_eq!(records[0], version_event(100.0).as_slice());
        // Epoch 2: wall time is the start plus two epochs of 2 s, step 2.
        assert_eq!(
            &records[2][..9],
            &[&[0x09u8][..], &104.0f64.to_le_bytes()].concat()[..]
        );
        assert_eq!(&records[2][9..11], &[0x10, 2]);
    }
}
