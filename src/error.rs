//! The one error type of the library: every fallible operation returns [`Result`].
//!
//! Errors carry what a user needs to act: the op and both shapes for a shape mismatch, the
//! file and the problem for bad input, the NVRTC log for a kernel that does not compile.

use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in aoanet.
#[derive(Debug)]
pub enum Error {
    /// An op was given shapes it cannot combine.
    Shape {
        /// The op that refused, e.g. `matmul`.
        op: &'static str,
        /// The shapes it was given, in argument order.
        shapes: Vec<Vec<usize>>,
        /// What the op expected.
        expected: String,
    },
    /// An op was given tensors of different dtypes or devices, or a dtype it does not support.
    Mismatch {
        /// The op that refused.
        op: &'static str,
        /// What differs, e.g. `dtypes f32 and f64`.
        detail: String,
    },
    /// An I/O error on a named file.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file whose content is wrong: truncated, corrupt, foreign or inconsistent.
    Format {
        /// The file.
        path: PathBuf,
        /// The problem, e.g. `truncated: expected 4096 bytes, found 100`.
        problem: String,
    },
    /// An argument or option that cannot be used, with what to do instead.
    Invalid(String),
    /// A non-finite value where finite values are required.
    NonFinite(String),
    /// A CUDA driver, NVRTC or kernel failure (the NVRTC log included).
    Cuda(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A shape error for `op` given `shapes`, which expected `expected`.
    pub fn shape(op: &'static str, shapes: &[&[usize]], expected: impl Into<String>) -> Self {
        Error::Shape {
            op,
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            expected: expected.into(),
        }
    }

    /// A format error about the file at `path`.
    pub fn format(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }

    /// An I/O error about the file at `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An invalid-argument error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape {
                op,
                shapes,
                expected,
            } => {
                write!(f, "{op}: incompatible shapes")?;
                for (i, s) in shapes.iter().enumerate() {
                    write!(f, "{}{s:?}", if i == 0 { " " } else { " and " })?;
                }
                write!(f, " (expected {expected})")
            }
            Error::Mismatch { op, detail } => write!(f, "{op}: {detail}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Format { path, problem } => write!(f, "{}: {problem}", path.display()),
            Error::Invalid(msg) => f.write_str(msg),
            Error::NonFinite(msg) => write!(f, "non-finite value: {msg}"),
            Error::Cuda(msg) => write!(f, "CUDA: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_error_names_both_shapes() {
        let e = Error::shape("matmul", &[&[2, 3], &[4, 5]], "lhs columns == rhs rows");
        let s = e.to_string();
        assert!(
            s.contains("[2, 3]") && s.contains("[4, 5]") && s.contains("matmul"),
            "{s}"
        );
    }

    #[test]
    fn format_error_names_the_file() {
        let e = Error::format("/x/feats.bin", "truncated: expected 10 bytes, found 3");
        assert_eq!(
            e.to_string(),
            "/x/feats.bin: truncated: expected 10 bytes, found 3"
        );
    }
}
