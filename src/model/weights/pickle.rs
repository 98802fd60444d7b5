//! Just enough of Python's pickle to read the object part of a PyTorch checkpoint: the opcodes
//! `torch.save` emits (protocols 2 to 5, from Python 2 or 3), evaluated into plain values.
//! Nothing is ever executed: a global is a name, a call is a (callable, args) pair for the caller
//! to interpret, and a persistent id (PyTorch's reference to a storage) is kept as data.
//!
//! Opcode meanings: CPython `Lib/pickletools.py`. candle's own pickle reader cannot be used for
//! the legacy format: it lacks the Python 2 string opcodes and overflows on the 10-byte magic
//! number.

use std::collections::HashMap;
use std::io::BufRead;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64, little-endian two's complement (LONG1/LONG4).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` (REDUCE / NEWOBJ), not evaluated.
    Call {
        callable: Box<Value>,
        args: Box<Value>,
    },
    PersistentId(Box<Value>),
    Mark,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global { module: m, name: n } if m == module && n == name)
    }

    /// Items of a tuple or list.
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }
}

/// Read one pickle (up to and including STOP) from `r`, leaving `r` just after it.
pub fn read<R: BufRead>(r: &mut R) -> Result<Value, String> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();
    loop {
        let op = byte(r)?;
        match op {
            0x80 => {
                byte(r)?; // PROTO n
            }
            0x95 => {
                bytes(r, 8)?; // FRAME length: frames are only a read-ahead hint
            }
            b'.' => return pop(&mut stack),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'K' => stack.push(Value::Int(byte(r)? as i64)),
            b'M' => stack.push(Value::Int(u16::from_le_bytes(array(r)?) as i64)),
            b'J' => stack.push(Value::Int(i32::from_le_bytes(array(r)?) as i64)),
            0x8a => {
                let n = byte(r)? as usize;
                stack.push(long(bytes(r, n)?));
            }
            0x8b => {
                let n = u32::from_le_bytes(array(r)?) as usize;
                stack.push(long(bytes(r, n)?));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(array(r)?))),
            b'X' => {
                let n = u32::from_le_bytes(array(r)?) as usize;
                stack.push(Value::Str(utf8(bytes(r, n)?)?));
            }
            0x8c => {
                let n = byte(r)? as usize;
                stack.push(Value::Str(utf8(bytes(r, n)?)?));
            }
            0x8d => {
                let n = u64::from_le_bytes(array(r)?) as usize;
                stack.push(Value::Str(utf8(bytes(r, n)?)?));
            }
            // Python 2 `str` (SHORT_BINSTRING, BINSTRING): bytes that old checkpoints use for
            // names; they are ASCII in practice, so they are read as text.
            b'U' => {
                let n = byte(r)? as usize;
                stack.push(Value::Str(latin1(bytes(r, n)?)));
            }
            b'T' => {
                let n = u32::from_le_bytes(array(r)?) as usize;
                stack.push(Value::Str(latin1(bytes(r, n)?)));
            }
            b'C' => {
                let n = byte(r)? as usize;
                stack.push(Value::Bytes(bytes(r, n)?));
            }
            b'B' => {
                let n = u32::from_le_bytes(array(r)?) as usize;
                stack.push(Value::Bytes(bytes(r, n)?));
            }
            b'c' => {
                let module = line(r)?;
                let name = line(r)?;
                stack.push(Value::Global { module, name });
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => {
                        stack.push(Value::Global { module, name })
                    }
                    other => return Err(format!("STACK_GLOBAL on {other:?}")),
                }
            }
            b'(' => stack.push(Value::Mark),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err("stack underflow".into());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b']' => stack.push(Value::List(Vec::new())),
            b'l' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::List(items));
            }
            b'a' => {
                let v = pop(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    other => return Err(format!("APPEND to {other:?}")),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    other => return Err(format!("APPENDS to {other:?}")),
                }
            }
            b'}' => stack.push(Value::Dict(Vec::new())),
            b'd' => {
                let items = pop_mark(&mut stack)?;
                stack.push(Value::Dict(pairs(items)?));
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                dict_top(&mut stack)?.push((k, v));
            }
            b'u' => {
                let items = pop_mark(&mut stack)?;
                let items = pairs(items)?;
                dict_top(&mut stack)?.extend(items);
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                stack.push(call(callable, args));
            }
            b'b' => {
                // BUILD sets an object's state; for the dicts and tensors of a state dict the
                // state (e.g. `_metadata`) carries no weights, so the object is kept as it is.
                pop(&mut stack)?;
            }
            b'Q' => {
                let id = pop(&mut stack)?;
                stack.push(Value::PersistentId(Box::new(id)));
            }
            b'q' => {
                let i = byte(r)? as u32;
                memo.insert(i, top(&stack)?);
            }
            b'r' => {
                let i = u32::from_le_bytes(array(r)?);
                memo.insert(i, top(&stack)?);
            }
            0x94 => {
                let i = memo.len() as u32;
                memo.insert(i, top(&stack)?);
            }
            b'h' => {
                let i = byte(r)? as u32;
                stack.push(memo.get(&i).cloned().ok_or(format!("memo {i} unset"))?);
            }
            b'j' => {
                let i = u32::from_le_bytes(array(r)?);
                stack.push(memo.get(&i).cloned().ok_or(format!("memo {i} unset"))?);
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
    }
}

/// `collections.OrderedDict(...)` becomes a plain dict (Python 3 pickles it empty and fills it
/// with SETITEMS; Python 2 passes a list of [key, value] pairs); any other call stays a call.
fn call(callable: Value, args: Value) -> Value {
    if callable.is_global("collections", "OrderedDict") {
        let pairs = args
            .items()
            .and_then(|a| a.first())
            .and_then(Value::items)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|kv| match kv.items() {
                        Some([k, v]) => Some((k.clone(), v.clone())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Value::Dict(pairs);
    }
    Value::Call {
        callable: Box::new(callable),
        args: Box::new(args),
    }
}

fn long(le: Vec<u8>) -> Value {
    if le.len() <= 8 {
        let fill = if le.last().is_some_and(|&b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut buf = [fill; 8];
        buf[..le.len()].copy_from_slice(&le);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(le)
    }
}

fn pairs(mut items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if items.len() % 2 != 0 {
        return Err("odd number of dict items".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.drain(..);
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn dict_top(stack: &mut [Value]) -> Result<&mut Vec<(Value, Value)>, String> {
    match stack.last_mut() {
        Some(Value::Dict(d)) => Ok(d),
        other => Err(format!("SETITEM on {other:?}")),
    }
}

fn pop(stack: &mut Vec<Value>) -> Result<Value, String> {
    stack.pop().ok_or_else(|| "stack underflow".into())
}

fn top(stack: &[Value]) -> Result<Value, String> {
    stack
        .last()
        .cloned()
        .ok_or_else(|| "memo of an empty stack".into())
}

fn pop_mark(stack: &mut Vec<Value>) -> Result<Vec<Value>, String> {
    let at = stack
        .iter()
        .rposition(|v| *v == Value::Mark)
        .ok_or("no MARK on the stack")?;
    let items = stack.split_off(at + 1);
    stack.pop();
    Ok(items)
}

fn byte<R: BufRead>(r: &mut R) -> Result<u8, String> {
    Ok(array::<R, 1>(r)?[0])
}

fn array<R: BufRead, const N: usize>(r: &mut R) -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    r.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

fn bytes<R: BufRead>(r: &mut R, n: usize) -> Result<Vec<u8>, String> {
    // Lengths come from the file: grow as data arrives instead of trusting them up front.
    let mut buf = Vec::new();
    let got = std::io::Read::read_to_end(&mut std::io::Read::take(&mut *r, n as u64), &mut buf)
        .map_err(|e| e.to_string())?;
    if got != n {
        return Err("unexpected end of file".into());
    }
    Ok(buf)
}

fn line<R: BufRead>(r: &mut R) -> Result<String, String> {
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf).map_err(|e| e.to_string())?;
    if buf.pop() != Some(b'\n') {
        return Err("unexpected end of file".into());
    }
    utf8(buf)
}

fn utf8(b: Vec<u8>) -> Result<String, String> {
    String::from_utf8(b).map_err(|e| e.to_string())
}

fn latin1(b: Vec<u8>) -> String {
    b.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Value {
        read(&mut std::io::Cursor::new(bytes)).unwrap()
    }

    /// Byte strings from CPython 3.11: `pickle.dumps(obj, protocol=2)`.
    #[test]
    fn python_pickles_decode_to_the_same_values() {
        // pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2): torch's legacy magic number.
        assert_eq!(
            read_all(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."),
            Value::BigInt(vec![
                0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19
            ])
        );
        // pickle.dumps(1001, protocol=2)
        assert_eq!(read_all(b"\x80\x02M\xe9\x03."), Value::Int(1001));
        // pickle.dumps(-2, protocol=2)
        assert_eq!(read_all(b"\x80\x02J\xfe\xff\xff\xff."), Value::Int(-2));
        // pickle.dumps({'a': (1, [2.5]), 'b': None}, protocol=2)
        assert_eq!(
            read_all(b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01]q\x02G@\x04\x00\x00\x00\x00\x00\x00a\x86q\x03X\x01\x00\x00\x00bq\x04Nu."),
            Value::Dict(vec![
                (
                    Value::Str("a".into()),
                    Value::Tuple(vec![Value::Int(1), Value::List(vec![Value::Float(2.5)])])
                ),
                (Value::Str("b".into()), Value::None),
            ])
        );
        // pickle.dumps(collections.OrderedDict([('x', 1)]), protocol=2)
        assert_eq!(
            read_all(
                b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00xq\x02K\x01s."
            ),
            Value::Dict(vec![(Value::Str("x".into()), Value::Int(1))])
        );
        // pickle.dumps(['k', 'k'], protocol=4): SHORT_BINUNICODE, MEMOIZE, BINGET, FRAME.
        assert_eq!(
            read_all(b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x01k\x94h\x01e."),
            Value::List(vec![Value::Str("k".into()), Value::Str("k".into())])
        );
    }

    /// Python 2's `str` opcodes and its OrderedDict reduction (a list of pairs).
    #[test]
    fn python2_strings_and_ordered_dicts() {
        // Python 2.7's OrderedDict reduces to (OrderedDict, ([[key, value], ...],)) and its `str`
        // pickles as SHORT_BINSTRING: that pickle for OrderedDict([('w', 1)]), assembled by hand
        // and checked with pickletools.dis and pickle.loads(..., encoding='latin1') (CPython 3.11).
        assert_eq!(
            read_all(b"\x80\x02ccollections\nOrderedDict\nq\x00]q\x01]q\x02(U\x01wq\x03K\x01ea\x85q\x04Rq\x05."),
            Value::Dict(vec![(Value::Str("w".into()), Value::Int(1))])
        );
    }

    #[test]
    fn persistent_ids_and_calls_are_data() {
        // Hand-assembled: GLOBAL torch._utils _rebuild_tensor_v2, ( BINPERSID('storage',), 0 ), REDUCE
        let v = read_all(
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nX\x07\x00\x00\x00storage\x85QK\x00\x86R.",
        );
        assert_eq!(
            v,
            Value::Call {
                callable: Box::new(Value::Global {
                    module: "torch._utils".into(),
                    name: "_rebuild_tensor_v2".into()
                }),
                args: Box::new(Value::Tuple(vec![
                    Value::PersistentId(Box::new(Value::Tuple(vec![Value::Str("storage".into())]))),
                    Value::Int(0)
                ])),
            }
        );
    }

    #[test]
    fn truncated_and_unknown_input_is_an_error() {
        assert!(read(&mut std::io::Cursor::new(b"\x80\x02X\x05\x00\x00\x00ab")).is_err());
        assert!(read(&mut std::io::Cursor::new(b"\x80\x02\xff")).is_err());
        assert!(read(&mut std::io::Cursor::new(b"\x80\x02")).is_err());
    }
}
