//! The safetensors format: read (validated, memory-mapped), write (atomic, deterministic) and
//! load strictly into a model's named parameters.
//!
//! A file is an 8-byte little-endian header length `N`, `N` bytes of UTF-8 JSON (padded with
//! spaces), then the data region. The header maps each tensor name to
//! `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}` (byte offsets into the data
//! region, little-endian elements, row-major), plus an optional `"__metadata__"` object of
//! string values. We accept exactly what the reference `safetensors` library accepts: the
//! tensors must tile the data region without gap or overlap, and the file must end with the
//! last tensor.
//!
//! Everything is validated when the file is opened, before any tensor is read, and every
//! error names the file: a truncated file says `truncated: expected N bytes, found M`.
//!
//! Floating-point tensors come back as [`Tensor`]s (`f16`/`bf16` as storage dtypes, or
//! converted on request); integer tensors (the fixtures' token ids) as [`IntTensor`], since
//! `Tensor` is float-only.

use crate::io::write_atomic;
use crate::json::{self, Value};
use crate::tensor::{DType, Device, Float, Storage, Tensor, numel};
use crate::{Error, Result, with_float};
use half::{bf16, f16};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Headers above this size are refused (as the reference library does): a foreign file's
/// first 8 bytes would otherwise ask for gigabytes.
const MAX_HEADER_BYTES: u64 = 100 << 20;

// ---------------------------------------------------------------------------------------------
// Element types of the format
// ---------------------------------------------------------------------------------------------

/// An element type as the format names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileDtype {
    /// `BOOL` (one byte, 0 or 1).
    Bool,
    /// `U8`
    U8,
    /// `I8`
    I8,
    /// `I16`
    I16,
    /// `U16`
    U16,
    /// `I32`
    I32,
    /// `U32`
    U32,
    /// `I64` (the fixtures' token ids).
    I64,
    /// `U64`
    U64,
    /// `F16`
    F16,
    /// `BF16`
    BF16,
    /// `F32`
    F32,
    /// `F64`
    F64,
    /// `F8_E4M3` (recognised so that a file holding it opens; reading it is an error).
    F8E4M3,
    /// `F8_E5M2` (recognised, not readable).
    F8E5M2,
}

impl FileDtype {
    const ALL: [FileDtype; 15] = [
        FileDtype::Bool,
        FileDtype::U8,
        FileDtype::I8,
        FileDtype::I16,
        FileDtype::U16,
        FileDtype::I32,
        FileDtype::U32,
        FileDtype::I64,
        FileDtype::U64,
        FileDtype::F16,
        FileDtype::BF16,
        FileDtype::F32,
        FileDtype::F64,
        FileDtype::F8E4M3,
        FileDtype::F8E5M2,
    ];

    /// The name in the header (`F32`, `I64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FileDtype::Bool => "BOOL",
            FileDtype::U8 => "U8",
            FileDtype::I8 => "I8",
            FileDtype::I16 => "I16",
            FileDtype::U16 => "U16",
            FileDtype::I32 => "I32",
            FileDtype::U32 => "U32",
            FileDtype::I64 => "I64",
            FileDtype::U64 => "U64",
            FileDtype::F16 => "F16",
            FileDtype::BF16 => "BF16",
            FileDtype::F32 => "F32",
            FileDtype::F64 => "F64",
            FileDtype::F8E4M3 => "F8_E4M3",
            FileDtype::F8E5M2 => "F8_E5M2",
        }
    }

    /// The type named `name` in a header, if the format defines it.
    pub fn from_name(name: &str) -> Option<FileDtype> {
        FileDtype::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FileDtype::Bool
            | FileDtype::U8
            | FileDtype::I8
            | FileDtype::F8E4M3
            | FileDtype::F8E5M2 => 1,
            FileDtype::I16 | FileDtype::U16 | FileDtype::F16 | FileDtype::BF16 => 2,
            FileDtype::I32 | FileDtype::U32 | FileDtype::F32 => 4,
            FileDtype::I64 | FileDtype::U64 | FileDtype::F64 => 8,
        }
    }

    /// The tensor dtype of a floating-point type we can read (`F16`, `BF16`, `F32`, `F64`).
    pub fn float(self) -> Option<DType> {
        match self {
            FileDtype::F16 => Some(DType::F16),
            FileDtype::BF16 => Some(DType::BF16),
            FileDtype::F32 => Some(DType::F32),
            FileDtype::F64 => Some(DType::F64),
            _ => None,
        }
    }

    /// Whether this is an integer (or boolean) type, read as [`IntTensor`].
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            FileDtype::Bool
                | FileDtype::U8
                | FileDtype::I8
                | FileDtype::I16
                | FileDtype::U16
                | FileDtype::I32
                | FileDtype::U32
                | FileDtype::I64
                | FileDtype::U64
        )
    }

    /// The file type of a tensor dtype.
    pub fn from_dtype(dtype: DType) -> FileDtype {
        match dtype {
            DType::F16 => FileDtype::F16,
            DType::BF16 => FileDtype::BF16,
            DType::F32 => FileDtype::F32,
            DType::F64 => FileDtype::F64,
        }
    }

    /// The range of values an integer type holds, as `i64` (`U64` is limited to `i64`'s).
    fn int_range(self) -> Option<(i64, i64)> {
        Some(match self {
            FileDtype::Bool => (0, 1),
            FileDtype::U8 => (0, u8::MAX.into()),
            FileDtype::I8 => (i8::MIN.into(), i8::MAX.into()),
            FileDtype::I16 => (i16::MIN.into(), i16::MAX.into()),
            FileDtype::U16 => (0, u16::MAX.into()),
            FileDtype::I32 => (i32::MIN.into(), i32::MAX.into()),
            FileDtype::U32 => (0, u32::MAX.into()),
            FileDtype::I64 => (i64::MIN, i64::MAX),
            FileDtype::U64 => (0, i64::MAX),
            _ => return None,
        })
    }
}

impl std::fmt::Display for FileDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Integer tensors
// ---------------------------------------------------------------------------------------------

/// An integer tensor (token ids, sequences): row-major values widened to `i64`, and the type
/// they are stored as in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntTensor {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: Vec<i64>,
    /// The file type: what it was read from, and what [`Writer::add_int`] writes.
    pub dtype: FileDtype,
}

impl IntTensor {
    /// An `I64` tensor; `data` must hold `numel(shape)` elements.
    pub fn new(shape: &[usize], data: Vec<i64>) -> Result<IntTensor> {
        if data.len() != numel(shape) {
            return Err(Error::shape(
                "IntTensor::new",
                &[shape, &[data.len()]],
                format!("{} elements", numel(shape)),
            ));
        }
        Ok(IntTensor {
            shape: shape.to_vec(),
            data,
            dtype: FileDtype::I64,
        })
    }

    /// The same values to be stored as `dtype`, which must be an integer type holding them all.
    pub fn with_dtype(mut self, dtype: FileDtype) -> Result<IntTensor> {
        let (lo, hi) = dtype
            .int_range()
            .ok_or_else(|| Error::invalid(format!("IntTensor: {dtype} is not an integer type")))?;
        if let Some(&x) = self.data.iter().find(|&&x| x < lo || x > hi) {
            return Err(Error::invalid(format!(
                "IntTensor: value {x} does not fit {dtype} ({lo}..={hi})"
            )));
        }
        self.dtype = dtype;
        Ok(self)
    }

    /// The values as indices (token ids); a negative value is an error.
    pub fn to_usize(&self) -> Result<Vec<usize>> {
        self.data
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                usize::try_from(x).map_err(|_| {
                    Error::invalid(format!("IntTensor: value {x} at {i} is not an index"))
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Where one tensor sits in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: FileDtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Byte range in the data region (after the header).
    pub data_offsets: Range<usize>,
}

/// What the strict loader does with file tensors that match no parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unexpected {
    /// Report them in the error (checkpoints: a foreign tensor means a different model).
    Error,
    /// Ignore them (files that hold more than one model's weights, like the fixtures).
    Ignore,
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An opened, fully validated safetensors file.
pub struct SafeTensors {
    path: PathBuf,
    bytes: Bytes,
    /// Where the data region starts: 8 + the header length.
    data_start: usize,
    tensors: BTreeMap<String, TensorInfo>,
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for SafeTensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SafeTensors({}, {} tensors)",
            self.path.display(),
            self.tensors.len()
        )
    }
}

impl SafeTensors {
    /// Opens and validates the file at `path` (memory-mapped; tensors are copied out on
    /// request).
    pub fn open(path: impl AsRef<Path>) -> Result<SafeTensors> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let bytes = if len < 8 {
            // Too short to map usefully (and mapping an empty file fails): validation below
            // reports the truncation.
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut v).map_err(|e| Error::io(path, e))?;
            Bytes::Owned(v)
        } else {
            // SAFETY: the map is read-only and lives in this struct with the file's bytes
            // only ever read through it. Another process truncating the file while it is mapped
            // would fault; our own writer never modifies a file in place (it renames a new
            // file over the old name, so a mapped old file keeps its inode).
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            Bytes::Mapped(map)
        };
        SafeTensors::parse(path, bytes)
    }

    /// Validates an in-memory file; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: impl AsRef<Path>) -> Result<SafeTensors> {
        SafeTensors::parse(path.as_ref(), Bytes::Owned(bytes))
    }

    fn parse(path: &Path, bytes: Bytes) -> Result<SafeTensors> {
        let fail = |problem: String| Error::format(path, problem);
        let len = bytes.len();
        if len < 8 {
            return Err(fail(format!(
                "truncated: expected at least 8 bytes (the header length), found {len}"
            )));
        }
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if n > MAX_HEADER_BYTES {
            return Err(fail(format!(
                "the header length field says {n} bytes, more than the 100 MiB allowed: \
                 not a safetensors file?"
            )));
        }
        let header_end = 8 + n as usize;
        if len < header_end {
            return Err(fail(format!(
                "truncated: expected {header_end} bytes for the header alone, found {len}"
            )));
        }
        let text = std::str::from_utf8(&bytes[8..header_end])
            .map_err(|e| fail(format!("the header is not UTF-8: {e}")))?;
        if !text.starts_with('{') {
            return Err(fail(
                "the header does not start with '{': not a safetensors file?".into(),
            ));
        }
        let header = json::parse(text, &path.display().to_string())?;
        let fields = header
            .as_object()
            .ok_or_else(|| fail("the header is not a JSON object".into()))?;

        let mut tensors = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        let mut seen = HashSet::new();
        for (key, value) in fields {
            if !seen.insert(key.as_str()) {
                return Err(fail(format!("the header names {key:?} twice")));
            }
            if key == "__metadata__" {
                metadata = parse_metadata(value).map_err(fail)?;
            } else {
                let info = parse_entry(value).map_err(|p| fail(format!("tensor {key:?}: {p}")))?;
                tensors.insert(key.clone(), info);
            }
        }
        check_tiling(&tensors, len - header_end, header_end).map_err(fail)?;
        Ok(SafeTensors {
            path: path.to_path_buf(),
            bytes,
            data_start: header_end,
            tensors,
            metadata,
        })
    }

    /// The file's path (or the name given to [`SafeTensors::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the file holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Where the tensor `name` sits, if the file has it.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The `__metadata__` entries, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// One `__metadata__` entry.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    fn entry(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let info = self.tensors.get(name).ok_or_else(|| {
            Error::format(&self.path, format!("no tensor named {name:?} in the file"))
        })?;
        let r = &info.data_offsets;
        Ok((
            info,
            &self.bytes[self.data_start + r.start..self.data_start + r.end],
        ))
    }

    fn not_float(&self, name: &str, dtype: FileDtype) -> Error {
        let hint = if dtype.is_integer() {
            " (read it with int_tensor)"
        } else {
            ""
        };
        Error::format(
            &self.path,
            format!("tensor {name:?} is {dtype}, not a floating-point type we read{hint}"),
        )
    }

    /// The floating-point tensor `name` in its stored dtype (`f16`/`bf16` stay storage
    /// dtypes).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let (info, _) = self.entry(name)?;
        let dtype = info
            .dtype
            .float()
            .ok_or_else(|| self.not_float(name, info.dtype))?;
        self.tensor_as(name, dtype)
    }

    /// The floating-point tensor `name` converted to `dtype` (rounding to nearest when
    /// narrowing).
    pub fn tensor_as(&self, name: &str, dtype: DType) -> Result<Tensor> {
        let (info, bytes) = self.entry(name)?;
        if info.dtype.float().is_none() {
            return Err(self.not_float(name, info.dtype));
        }
        let n = numel(&info.shape);
        let storage = match dtype {
            DType::F32 => Storage::F32(decode_vec(info.dtype, bytes, n)),
            DType::F64 => Storage::F64(decode_vec(info.dtype, bytes, n)),
            DType::F16 if info.dtype == FileDtype::F16 => Storage::F16(
                bytes
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            DType::BF16 if info.dtype == FileDtype::BF16 => Storage::BF16(
                bytes
                    .chunks_exact(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ),
            // Through f64, which holds every source value exactly: one rounding.
            DType::F16 => Storage::F16(
                decode_vec::<f64>(info.dtype, bytes, n)
                    .into_iter()
                    .map(f16::from_f64)
                    .collect(),
            ),
            DType::BF16 => Storage::BF16(
                decode_vec::<f64>(info.dtype, bytes, n)
                    .into_iter()
                    .map(bf16::from_f64)
                    .collect(),
            ),
        };
        Tensor::from_storage(storage, &info.shape)
    }

    /// The integer (or boolean) tensor `name`, widened to `i64`. `U64` values above
    /// `i64::MAX` are an error.
    pub fn int_tensor(&self, name: &str) -> Result<IntTensor> {
        let (info, bytes) = self.entry(name)?;
        let le = |c: &[u8]| -> [u8; 8] {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            b
        };
        let data: Vec<i64> = match info.dtype {
            FileDtype::Bool | FileDtype::U8 => bytes.iter().map(|&b| i64::from(b)).collect(),
            FileDtype::I8 => bytes.iter().map(|&b| i64::from(b as i8)).collect(),
            FileDtype::I16 => bytes
                .chunks_exact(2)
                .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
            FileDtype::U16 => bytes
                .chunks_exact(2)
                .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            FileDtype::I32 => bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            FileDtype::U32 => bytes
                .chunks_exact(4)
                .map(|c| i64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            FileDtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(le(c)))
                .collect(),
            FileDtype::U64 => bytes
                .chunks_exact(8)
                .map(|c| {
                    let v = u64::from_le_bytes(le(c));
                    i64::try_from(v).map_err(|_| {
                        Error::format(
                            &self.path,
                            format!("tensor {name:?}: U64 value {v} does not fit i64"),
                        )
                    })
                })
                .collect::<Result<_>>()?,
            other => {
                return Err(Error::format(
                    &self.path,
                    format!(
                        "tensor {name:?} is {other}, not an integer type (read it with tensor)"
                    ),
                ));
            }
        };
        Ok(IntTensor {
            shape: info.shape.clone(),
            data,
            dtype: info.dtype,
        })
    }

    /// Names in the file starting with `prefix` (sorted).
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<&str> {
        self.tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }

    /// Loads the tensors `prefix + name` into the parameters `params` (name, tensor), in
    /// place, converting to each parameter's dtype.
    ///
    /// Strict and all-or-nothing: every missing tensor, every tensor of the wrong shape or of
    /// a non-float type, and (with [`Unexpected::Error`]) every file tensor under `prefix` that
    /// matches no parameter is listed by name in one error, and then no parameter has been
    /// touched. Do not call it while a graph still refers to the parameters' values.
    pub fn load_into<S: AsRef<str>>(
        &self,
        prefix: &str,
        params: &[(S, Tensor)],
        unexpected: Unexpected,
    ) -> Result<()> {
        self.check_params(prefix, params, unexpected)?;
        for (name, param) in params {
            let (info, bytes) = self.entry(&format!("{prefix}{}", name.as_ref()))?;
            let dtype = info.dtype;
            if param.dtype().is_compute() {
                // Straight from the file's bytes into the parameter: no intermediate copy.
                with_float!(param.dtype(), "load_into", T => {
                    param.with_data_mut::<T, _>(|dst| decode_into(dtype, bytes, dst))
                })?;
            } else {
                param.update_(
                    &self.tensor_as(&format!("{prefix}{}", name.as_ref()), param.dtype())?,
                )?;
            }
        }
        Ok(())
    }

    /// The validation half of [`SafeTensors::load_into`]: `Ok` when every parameter can be
    /// loaded.
    pub fn check_params<S: AsRef<str>>(
        &self,
        prefix: &str,
        params: &[(S, Tensor)],
        unexpected: Unexpected,
    ) -> Result<()> {
        let mut wanted = HashSet::new();
        for (name, p) in params {
            let name = name.as_ref();
            if !wanted.insert(format!("{prefix}{name}")) {
                return Err(Error::invalid(format!(
                    "load_into: the parameter list names {name:?} twice"
                )));
            }
            if p.layout().contiguous_range().is_none() {
                return Err(Error::invalid(format!(
                    "load_into: parameter {name:?} is not contiguous"
                )));
            }
            p.expect_cpu("load_into")?;
        }
        let mut missing = Vec::new();
        let mut wrong_shape = Vec::new();
        let mut wrong_type = Vec::new();
        for (name, p) in params {
            let name = name.as_ref();
            match self.tensors.get(&format!("{prefix}{name}")) {
                None => missing.push(format!("{name} {:?}", p.shape())),
                Some(info) => {
                    if info.dtype.float().is_none() {
                        wrong_type.push(format!("{name} ({})", info.dtype));
                    }
                    if info.shape != p.shape() {
                        wrong_shape.push(format!(
                            "{name} is {:?} in the file, the model expects {:?}",
                            info.shape,
                            p.shape()
                        ));
                    }
                }
            }
        }
        let extra: Vec<String> = match unexpected {
            Unexpected::Ignore => Vec::new(),
            Unexpected::Error => self
                .tensors
                .iter()
                .filter(|(k, _)| k.starts_with(prefix) && !wanted.contains(k.as_str()))
                .map(|(k, i)| format!("{} {:?}", &k[prefix.len()..], i.shape))
                .collect(),
        };
        if missing.is_empty() && wrong_shape.is_empty() && wrong_type.is_empty() && extra.is_empty()
        {
            return Ok(());
        }
        let mut msg = format!(
            "the tensors{} do not match the model ({} missing, {} unexpected, {} with the wrong \
             shape, {} not floating point); nothing was loaded",
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" under {prefix:?}")
            },
            missing.len(),
            extra.len(),
            wrong_shape.len(),
            wrong_type.len()
        );
        for (what, list) in [
            ("missing", &missing),
            ("unexpected", &extra),
            ("wrong shape", &wrong_shape),
            ("not floating point", &wrong_type),
        ] {
            if !list.is_empty() {
                let _ = write!(msg, "\n  {what}: {}", list.join(", "));
            }
        }
        Err(Error::format(&self.path, msg))
    }
}

fn parse_metadata(value: &Value) -> std::result::Result<BTreeMap<String, String>, String> {
    let fields = value
        .as_object()
        .ok_or("__metadata__ is not an object of strings")?;
    let mut out = BTreeMap::new();
    for (k, v) in fields {
        let s = v
            .as_str()
            .ok_or_else(|| format!("__metadata__ entry {k:?} is not a string"))?;
        if out.insert(k.clone(), s.to_string()).is_some() {
            return Err(format!("__metadata__ names {k:?} twice"));
        }
    }
    Ok(out)
}

fn parse_entry(value: &Value) -> std::result::Result<TensorInfo, String> {
    let dtype_name = value
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or("no \"dtype\" string")?;
    let dtype =
        FileDtype::from_name(dtype_name).ok_or_else(|| format!("unknown dtype {dtype_name:?}"))?;
    let shape = value
        .get("shape")
        .and_then(Value::as_array)
        .ok_or("no \"shape\" array")?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or("\"shape\" holds something other than non-negative integers")?;
    let offsets = value
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or("no \"data_offsets\" array")?;
    let [begin, end] = offsets else {
        return Err("\"data_offsets\" must hold exactly two numbers".into());
    };
    let (begin, end) = match (begin.as_u64(), end.as_u64()) {
        (Some(b), Some(e)) if b <= e => (b, e),
        _ => {
            return Err(format!(
                "\"data_offsets\" {} is not a pair of non-negative integers begin ≤ end",
                Value::Array(offsets.to_vec()).to_json()
            ));
        }
    };
    let expected = shape
        .iter()
        .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if end - begin != expected {
        return Err(format!(
            "{dtype} {shape:?} needs {expected} bytes but its data_offsets [{begin}, {end}] \
             span {}",
            end - begin
        ));
    }
    let to_usize = |x: u64| usize::try_from(x).map_err(|_| format!("offset {x} is too large"));
    Ok(TensorInfo {
        dtype,
        shape,
        data_offsets: to_usize(begin)?..to_usize(end)?,
    })
}

/// The tensors must tile `0..data_len` exactly, as the reference library requires.
fn check_tiling(
    tensors: &BTreeMap<String, TensorInfo>,
    data_len: usize,
    header_end: usize,
) -> std::result::Result<(), String> {
    let mut spans: Vec<(&str, &Range<usize>)> = tensors
        .iter()
        .map(|(k, i)| (k.as_str(), &i.data_offsets))
        .collect();
    spans.sort_by_key(|(name, r)| (r.start, r.end, *name));
    let mut prev: Option<(&str, &Range<usize>)> = None;
    let mut pos = 0usize;
    for &(name, r) in &spans {
        if r.start < pos {
            let (pname, pr) = prev.expect("pos > 0 only after a tensor");
            return Err(format!(
                "tensors {pname:?} (bytes {}..{}) and {name:?} (bytes {}..{}) overlap",
                pr.start, pr.end, r.start, r.end
            ));
        }
        if r.start > pos {
            return Err(format!(
                "{} bytes between the end of the previous tensor and {name:?} belong to no \
                 tensor",
                r.start - pos
            ));
        }
        pos = r.end;
        prev = Some((name, r));
    }
    if pos > data_len {
        return Err(format!(
            "truncated: expected {} bytes, found {}",
            header_end + pos,
            header_end + data_len
        ));
    }
    if pos < data_len {
        return Err(format!(
            "{} bytes after the last tensor belong to no tensor",
            data_len - pos
        ));
    }
    Ok(())
}

/// Decodes little-endian floats of type `dtype` into `out` (one rounding when narrowing).
fn decode_into<T: Float>(dtype: FileDtype, bytes: &[u8], out: &mut [T]) {
    macro_rules! run {
        ($n:literal, $conv:expr) => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact($n)) {
                let c: [u8; $n] = c.try_into().expect("chunk size");
                *o = T::from_f64($conv(c));
            }
        };
    }
    match dtype {
        FileDtype::F16 => run!(2, |c| f16::from_le_bytes(c).to_f64()),
        FileDtype::BF16 => run!(2, |c| bf16::from_le_bytes(c).to_f64()),
        FileDtype::F32 => run!(4, |c| f64::from(f32::from_le_bytes(c))),
        FileDtype::F64 => run!(8, f64::from_le_bytes),
        other => unreachable!("decode_into called on {other}: callers check float()"),
    }
}

fn decode_vec<T: Float>(dtype: FileDtype, bytes: &[u8], n: usize) -> Vec<T> {
    let mut v = vec![T::ZERO; n];
    decode_into(dtype, bytes, &mut v);
    v
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

enum Entry {
    Float(Tensor, DType),
    Int(IntTensor),
}

impl Entry {
    fn dtype(&self) -> FileDtype {
        match self {
            Entry::Float(_, d) => FileDtype::from_dtype(*d),
            Entry::Int(t) => t.dtype,
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            Entry::Float(t, _) => t.shape(),
            Entry::Int(t) => &t.shape,
        }
    }

    fn byte_len(&self) -> usize {
        numel(self.shape()) * self.dtype().size()
    }
}

/// Collects named tensors and metadata, then writes one safetensors file atomically.
///
/// Tensors are held as handles and read when the file is written: write before the next
/// optimiser step if the file must hold the current values.
///
/// The output is deterministic: tensors in name order (header and data alike), metadata in
/// key order, the header padded with spaces to a multiple of 8 bytes.
#[derive(Default)]
pub struct Writer {
    entries: BTreeMap<String, Entry>,
    metadata: BTreeMap<String, String>,
}

impl Writer {
    /// An empty file.
    pub fn new() -> Writer {
        Writer::default()
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if name.is_empty() || name == "__metadata__" {
            return Err(Error::invalid(format!(
                "safetensors: {name:?} cannot name a tensor"
            )));
        }
        if self.entries.contains_key(name) {
            return Err(Error::invalid(format!(
                "safetensors: tensor {name:?} added twice"
            )));
        }
        Ok(())
    }

    /// Adds `tensor` under `name` in its own dtype.
    pub fn add(&mut self, name: impl Into<String>, tensor: &Tensor) -> Result<&mut Writer> {
        self.add_as(name, tensor, tensor.dtype())
    }

    /// Adds `tensor` under `name`, stored as `dtype` (rounded to nearest when narrowing).
    pub fn add_as(
        &mut self,
        name: impl Into<String>,
        tensor: &Tensor,
        dtype: DType,
    ) -> Result<&mut Writer> {
        let name = name.into();
        self.check_name(&name)?;
        // A device tensor is copied to the host now: the file holds the values of this moment
        // (a checkpoint of a model training on a GPU), and writing needs no device.
        let host = if tensor.is_cuda() {
            tensor.to_device(Device::Cpu)?.detach()
        } else {
            tensor.detach()
        };
        self.entries.insert(name, Entry::Float(host, dtype));
        Ok(self)
    }

    /// Adds every `(name, tensor)` of `named` with `prefix` before the name, stored as
    /// `dtype` (or each tensor's own dtype when `None`).
    pub fn add_all<S: AsRef<str>>(
        &mut self,
        prefix: &str,
        named: &[(S, Tensor)],
        dtype: Option<DType>,
    ) -> Result<&mut Writer> {
        for (name, t) in named {
            self.add_as(
                format!("{prefix}{}", name.as_ref()),
                t,
                dtype.unwrap_or(t.dtype()),
            )?;
        }
        Ok(self)
    }

    /// Adds an integer tensor, stored as its `dtype`.
    pub fn add_int(&mut self, name: impl Into<String>, tensor: IntTensor) -> Result<&mut Writer> {
        let name = name.into();
        self.check_name(&name)?;
        // Re-checks the range, so a hand-built IntTensor cannot write a wrapped value.
        let dtype = tensor.dtype;
        let tensor = tensor.with_dtype(dtype)?;
        if tensor.data.len() != numel(&tensor.shape) {
            return Err(Error::shape(
                "safetensors write",
                &[&tensor.shape, &[tensor.data.len()]],
                "as many values as the shape holds",
            ));
        }
        self.entries.insert(name, Entry::Int(tensor));
        Ok(self)
    }

    /// Sets a `__metadata__` entry (replacing an earlier value).
    pub fn set_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> &mut Writer {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Number of tensors added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no tensor was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The header bytes (length field included).
    fn header(&self) -> Vec<u8> {
        let mut fields: Vec<(String, Value)> = Vec::with_capacity(self.entries.len() + 1);
        if !self.metadata.is_empty() {
            fields.push((
                "__metadata__".into(),
                json::object(self.metadata.iter().map(|(k, v)| (k.clone(), v.clone()))),
            ));
        }
        let mut offset = 0usize;
        for (name, e) in &self.entries {
            let end = offset + e.byte_len();
            fields.push((
                name.clone(),
                json::object([
                    ("dtype", Value::from(e.dtype().name())),
                    ("shape", Value::from(e.shape().to_vec())),
                    ("data_offsets", Value::from(vec![offset, end])),
                ]),
            ));
            offset = end;
        }
        let mut text = Value::Object(fields).to_json().into_bytes();
        // Pad so the data region starts 8-byte aligned (as the reference writer does).
        while !text.len().is_multiple_of(8) {
            text.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + text.len());
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(&text);
        out
    }

    fn write_to(&self, w: &mut dyn Write, path: &Path) -> Result<()> {
        let io = |e| Error::io(path, e);
        w.write_all(&self.header()).map_err(io)?;
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        for e in self.entries.values() {
            match e {
                Entry::Int(t) => {
                    let size = t.dtype.size();
                    for chunk in t.data.chunks(4096) {
                        buf.clear();
                        for &x in chunk {
                            // Range checked in add_int: the low bytes are the value.
                            buf.extend_from_slice(&x.to_le_bytes()[..size]);
                        }
                        w.write_all(&buf).map_err(io)?;
                    }
                }
                Entry::Float(t, DType::F32) => {
                    let t = t.to_dtype(DType::F32)?;
                    t.with_data::<f32, _>(|d| write_le(w, &mut buf, d, f32::to_le_bytes))?
                        .map_err(io)?;
                }
                Entry::Float(t, DType::F64) => {
                    let t = t.to_dtype(DType::F64)?;
                    t.with_data::<f64, _>(|d| write_le(w, &mut buf, d, f64::to_le_bytes))?
                        .map_err(io)?;
                }
                // f64 holds every source value exactly, so this is one rounding (none for a
                // tensor already in the half type).
                Entry::Float(t, DType::F16) => {
                    let v: Vec<f16> = t.to_vec_f64().into_iter().map(f16::from_f64).collect();
                    write_le(w, &mut buf, &v, f16::to_le_bytes).map_err(io)?;
                }
                Entry::Float(t, DType::BF16) => {
                    let v: Vec<bf16> = t.to_vec_f64().into_iter().map(bf16::from_f64).collect();
                    write_le(w, &mut buf, &v, bf16::to_le_bytes).map_err(io)?;
                }
            }
        }
        Ok(())
    }

    /// The whole file in memory.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out, Path::new("<memory>"))?;
        Ok(out)
    }

    /// Writes the file at `path` atomically (temporary file, fsync, rename): on any error the
    /// old file, if any, is untouched.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        write_atomic(path, |w| self.write_to(w, path))
    }
}

fn write_le<T: Copy, const N: usize>(
    w: &mut dyn Write,
    buf: &mut Vec<u8>,
    data: &[T],
    to_le: fn(T) -> [u8; N],
) -> std::io::Result<()> {
    for chunk in data.chunks((1 << 16) / N) {
        buf.clear();
        for &x in chunk {
            buf.extend_from_slice(&to_le(x));
        }
        w.write_all(buf)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Whole checkpoints
// ---------------------------------------------------------------------------------------------

/// Writes `named` tensors (stored as `dtype`, or each one's own dtype when `None`) and
/// `metadata` to `path` atomically.
pub fn save_named<S: AsRef<str>>(
    path: impl AsRef<Path>,
    named: &[(S, Tensor)],
    dtype: Option<DType>,
    metadata: &[(&str, &str)],
) -> Result<()> {
    let mut w = Writer::new();
    w.add_all("", named, dtype)?;
    for (k, v) in metadata {
        w.set_metadata(*k, *v);
    }
    w.write(path)
}

/// Opens `path` and loads it strictly into `params` (see [`SafeTensors::load_into`]: every
/// missing, unexpected or mis-shaped tensor is named in one error and nothing is loaded).
/// Returns the opened file for its metadata and any further tensors.
pub fn load_named<S: AsRef<str>>(
    path: impl AsRef<Path>,
    params: &[(S, Tensor)],
) -> Result<SafeTensors> {
    let file = SafeTensors::open(path)?;
    file.load_into("", params, Unexpected::Error)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Writer {
        let mut w = Writer::new();
        w.add(
            "b.weight",
            &Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 1e-3, 7.0], &[2, 3]).unwrap(),
        )
        .unwrap();
        w.add(
            "a.bias",
            &Tensor::from_vec(vec![0.1f64, 0.2], &[2]).unwrap(),
        )
        .unwrap();
        w.add_int("ids", IntTensor::new(&[3], vec![0, 7, -4]).unwrap())
            .unwrap();
        w.set_metadata("step", "12");
        w
    }

    #[test]
    fn header_is_padded_sorted_and_parsable() {
        let bytes = sample().to_bytes().unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + n) % 8, 0);
        let text = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        let a = text.find("a.bias").unwrap();
        let b = text.find("b.weight").unwrap();
        let m = text.find("__metadata__").unwrap();
        assert!(m < a && a < b, "{text}");
        let st = SafeTensors::from_bytes(bytes, "mem").unwrap();
        assert_eq!(st.names(), vec!["a.bias", "b.weight", "ids"]);
        assert_eq!(st.meta("step"), Some("12"));
        assert_eq!(st.info("a.bias").unwrap().data_offsets, 0..16);
    }

    #[test]
    fn same_content_gives_identical_bytes() {
        assert_eq!(sample().to_bytes().unwrap(), sample().to_bytes().unwrap());
    }

    #[test]
    fn writer_refuses_bad_names_and_values() {
        let mut w = sample();
        let t = Tensor::zeros(&[1], DType::F32);
        assert!(w.add("a.bias", &t).is_err());
        assert!(w.add("__metadata__", &t).is_err());
        assert!(w.add("", &t).is_err());
        let e = IntTensor::new(&[1], vec![300])
            .unwrap()
            .with_dtype(FileDtype::U8)
            .unwrap_err();
        assert!(e.to_string().contains("300"), "{e}");
        let mut forged = IntTensor::new(&[1], vec![-1]).unwrap();
        forged.dtype = FileDtype::U32;
        assert!(w.add_int("forged", forged).is_err());
        assert!(IntTensor::new(&[2], vec![1]).is_err());
    }
}
