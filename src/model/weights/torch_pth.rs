//! PyTorch checkpoints (`torch.save(model.state_dict(), ...)`), such as torchvision's
//! `vgg16-397923af.pth`: keys `features.N.weight` (OIHW) and `features.N.bias`.
//!
//! Two container formats exist (torch/serialization.py):
//! * zip (PyTorch >= 1.6): read with candle's `pickle` module;
//! * legacy (older files, e.g. torchvision's 2017 uploads): five pickles (magic number, protocol
//!   version, system info, the object with storages as persistent ids, the sorted storage keys)
//!   followed by each storage as an i64 element count and raw little-endian data. Read here with
//!   `pickle::read`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::pickle::{self, Value};
use super::{WeightsError, WeightsFormat};

/// `torch.serialization.MAGIC_NUMBER`, 0x1950a86a20f9469cfc6c, little-endian.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// `torch.serialization.PROTOCOL_VERSION`.
const LEGACY_PROTOCOL: i64 = 1001;

pub fn read_zip(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let tensors = candle_core::pickle::read_all(path)
        .map_err(|e| WeightsError::format(path, WeightsFormat::TorchZip, e))?;
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let t = t
            .to_device(device)
            .map_err(|e| WeightsError::format(path, WeightsFormat::TorchZip, e))?;
        out.insert(name, t);
    }
    Ok(out)
}

pub fn read_legacy(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let file = std::fs::File::open(path).map_err(|source| WeightsError::Io {
        path: path.into(),
        error: source,
    })?;
    read_legacy_from(&mut BufReader::new(file), device)
        .map_err(|e| WeightsError::format(path, WeightsFormat::TorchLegacy, e))
}

/// A tensor as the pickle describes it: a view into a storage.
struct TensorRef {
    storage: String,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

/// A storage as its persistent id describes it.
struct StorageRef {
    dtype: DType,
    numel: usize,
    /// For old-style storage views: (root storage key, element offset into it).
    view_of: Option<(String, usize)>,
}

fn read_legacy_from<R: BufRead>(
    r: &mut R,
    device: &Device,
) -> Result<BTreeMap<String, Tensor>, String> {
    match pickle::read(r)? {
        Value::BigInt(b) if b == LEGACY_MAGIC => {}
        other => {
            return Err(format!(
                "not a legacy PyTorch file (magic number {other:?})"
            ))
        }
    }
    match pickle::read(r)? {
        Value::Int(LEGACY_PROTOCOL) => {}
        other => return Err(format!("unsupported protocol version {other:?}")),
    }
    if let Value::Dict(info) = pickle::read(r)? {
        let little = info
            .iter()
            .find(|(k, _)| k.as_str() == Some("little_endian"))
            .map(|(_, v)| v.as_int() == Some(1));
        if little == Some(false) {
            return Err("saved on a big-endian machine; not supported".into());
        }
    }
    let object = pickle::read(r)?;
    let keys = pickle::read(r)?;
    let keys: Vec<String> = keys
        .items()
        .ok_or("the storage key list is not a list")?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or("a storage key is not a string")
        })
        .collect::<Result<_, _>>()?;

    let entries = state_dict_entries(object)?;
    let mut storages: HashMap<String, StorageRef> = HashMap::new();
    let mut tensors = Vec::new();
    for (name, value) in entries {
        if let Some(t) = tensor_ref(&value, &mut storages)? {
            tensors.push((name, t));
        }
    }

    // The raw storages follow, in the order of `keys`.
    let mut data: HashMap<String, (DType, Vec<u8>)> = HashMap::new();
    for key in &keys {
        let mut count = [0u8; 8];
        r.read_exact(&mut count).map_err(|e| e.to_string())?;
        let numel = i64::from_le_bytes(count);
        let storage = storages
            .get(key)
            .ok_or(format!("storage {key} is not used by any tensor"))?;
        if numel < 0 || numel as usize != storage.numel {
            return Err(format!(
                "storage {key}: {numel} elements on disk, {} in its description",
                storage.numel
            ));
        }
        let nbytes = storage.numel * storage.dtype.size_in_bytes();
        let mut bytes = Vec::new();
        r.by_ref()
            .take(nbytes as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        if bytes.len() != nbytes {
            return Err(format!("storage {key}: file ends inside its data"));
        }
        data.insert(key.clone(), (storage.dtype, bytes));
    }

    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let (root, base) = match &storages[&t.storage].view_of {
            Some((root, offset)) => (root.clone(), *offset),
            None => (t.storage.clone(), 0),
        };
        let (dtype, bytes) = data
            .get(&root)
            .ok_or(format!("{name}: storage {root} is missing from the file"))?;
        let tensor = materialize(bytes, *dtype, base + t.offset, &t.size, &t.stride, device)
            .map_err(|e| format!("{name}: {e}"))?;
        out.insert(name, tensor);
    }
    Ok(out)
}

/// The (name, value) pairs of a state dict, which may be wrapped as `{"state_dict": {...}}`.
fn state_dict_entries(object: Value) -> Result<Vec<(String, Value)>, String> {
    let Value::Dict(entries) = object else {
        return Err(format!(
            "expected a state dict (name -> tensor), found {}",
            kind(&object)
        ));
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        match (k, v) {
            (Value::Str(k), Value::Dict(inner)) if k == "state_dict" || k == "model" => {
                return state_dict_entries(Value::Dict(inner));
            }
            (Value::Str(k), v) => out.push((k, v)),
            _ => {}
        }
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Dict(_) => "a dict",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple",
        Value::Call { .. } => "an object",
        _ => "a plain value",
    }
}

/// Decode `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` (PyTorch >= 0.4),
/// `_rebuild_tensor(storage, offset, size, stride)` (older) and `_rebuild_parameter(tensor, ...)`.
/// Anything else is not a tensor and is skipped (`None`).
fn tensor_ref(
    value: &Value,
    storages: &mut HashMap<String, StorageRef>,
) -> Result<Option<TensorRef>, String> {
    let Value::Call { callable, args } = value else {
        return Ok(None);
    };
    let args = args.items().ok_or("tensor arguments are not a tuple")?;
    if callable.is_global("torch._utils", "_rebuild_parameter") {
        return match args.first() {
            Some(inner) => tensor_ref(inner, storages),
            None => Ok(None),
        };
    }
    if !callable.is_global("torch._utils", "_rebuild_tensor_v2")
        && !callable.is_global("torch._utils", "_rebuild_tensor")
    {
        return Ok(None);
    }
    let [storage, offset, size, stride, ..] = args else {
        return Err("too few arguments to rebuild a tensor".into());
    };
    let Value::PersistentId(id) = storage else {
        return Err("a tensor's storage is not a persistent id".into());
    };
    let id = id.items().ok_or("a storage id is not a tuple")?;
    // ('storage', storage_type, key, location, numel, view_metadata)
    let (Some(Value::Global { name: class, .. }), Some(key), Some(numel)) = (
        id.get(1),
        id.get(2).and_then(Value::as_str),
        id.get(4).and_then(Value::as_int),
    ) else {
        return Err(format!("unexpected storage id {id:?}"));
    };
    let dtype = match class.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        other => return Err(format!("unsupported storage type {other}")),
    };
    let view_of = match id.get(5).and_then(Value::items) {
        // (view key, offset, size): `key` names the root storage, the tensor uses the view.
        Some([Value::Str(view_key), offset, _]) => {
            let offset = offset.as_int().ok_or("storage view offset")? as usize;
            storages.entry(view_key.clone()).or_insert(StorageRef {
                dtype,
                numel: 0,
                view_of: Some((key.to_string(), offset)),
            });
            Some(view_key.clone())
        }
        _ => None,
    };
    storages.entry(key.to_string()).or_insert(StorageRef {
        dtype,
        numel: numel as usize,
        view_of: None,
    });
    let ints = |v: &Value| -> Result<Vec<usize>, String> {
        v.items()
            .ok_or("size/stride is not a tuple")?
            .iter()
            .map(|i| {
                i.as_int()
                    .map(|i| i as usize)
                    .ok_or("not an integer".into())
            })
            .collect()
    };
    Ok(Some(TensorRef {
        storage: view_of.unwrap_or_else(|| key.to_string()),
        offset: offset.as_int().ok_or("tensor offset")? as usize,
        size: ints(size)?,
        stride: ints(stride)?,
    }))
}

/// Gather a (possibly strided) view of a raw storage into a contiguous f32 tensor.
fn materialize(
    bytes: &[u8],
    dtype: DType,
    offset: usize,
    size: &[usize],
    stride: &[usize],
    device: &Device,
) -> Result<Tensor, String> {
    let elem = dtype.size_in_bytes();
    if size.len() != stride.len() {
        return Err("size and stride differ in length".into());
    }
    let numel: usize = size.iter().product();
    // Row-major strides: the common case, a plain copy of the bytes.
    let mut contiguous = vec![1usize; size.len()];
    for d in (0..size.len().saturating_sub(1)).rev() {
        contiguous[d] = contiguous[d + 1] * size[d + 1];
    }
    if contiguous == stride || numel <= 1 {
        let range = offset * elem..(offset + numel) * elem;
        let slice = bytes.get(range).ok_or("tensor reaches past its storage")?;
        return Tensor::from_raw_buffer(slice, dtype, size, device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| e.to_string());
    }
    let storage = Tensor::from_raw_buffer(bytes, dtype, &[bytes.len() / elem], &Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| e.to_string())?;
    let mut values = Vec::with_capacity(numel);
    let mut index = vec![0usize; size.len()];
    for _ in 0..numel {
        let at = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        values.push(*storage.get(at).ok_or("tensor reaches past its storage")?);
        // Row-major increment of the multi-index.
        for d in (0..size.len()).rev() {
            index[d] += 1;
            if index[d] < size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Tensor::from_vec(values, size, device).map_err(|e| e.to_string())
}
