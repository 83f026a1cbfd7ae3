//! Files in and out: safetensors checkpoints and the atomic write every output file goes
//! through.
//!
//! | file | what it defines |
//! | --- | --- |
//! | `atomic` | [`write_atomic`]: temporary file in the same folder, fsync, rename, fsync folder |
//! | `safetensors` | the safetensors reader (validated, memory-mapped), writer and strict loader |

mod atomic;
pub mod safetensors;

pub use atomic::{AtomicFile, write_atomic, write_file};
pub use safetensors::{
    FileDtype, IntTensor, SafeTensors, TensorInfo, Unexpected, Writer, load_named, save_named,
};
