//! What several subcommands share: option overrides (config file, `--set`, flags), metric
//! selection, stop signals, progress printing, run-folder names, the metrics table.

use aoanet::json::{self, Value};
use aoanet::metrics::{KEYS, Metric};
use aoanet::model::AoaConfig;
use aoanet::tensor::Device;
use aoanet::train::{Event, Scoring, TrainOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// A command's failure: the message for stderr.
pub type CmdResult<T = ()> = Result<T, String>;

/// Turns a library error into the command's message.
pub fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Where a command computes.
#[derive(clap::Args, Clone, Debug)]
pub struct DeviceArgs {
    /// Where to compute: `cpu`, `cuda` (the first GPU) or `cuda:N`. `auto` takes the first
    /// GPU when this build has the `cuda` feature and a driver reports one, else the CPU.
    /// Results on a GPU differ from the CPU's in the last bits of f32 (summation order).
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: String,
    /// The matrix products' precision on a GPU: `f32` (exact f32 FMAs, the default), `tf32`
    /// (tensor cores on inputs rounded to 10-bit mantissas, f32 accumulation: faster, about
    /// 1e-3 relative per product) or `bf16` (7-bit mantissas: fastest, about 1e-2). Weights
    /// and everything else stay f32. The CPU always computes in f32.
    #[arg(long, default_value = "f32", value_name = "P")]
    pub precision: String,
}

impl DeviceArgs {
    /// The chosen device, checked to be usable now (an unknown name, a build without the
    /// `cuda` feature or a missing GPU is an error before any work starts); printed on
    /// stderr.
    pub fn resolve(&self) -> CmdResult<Device> {
        let named = |e: aoanet::Error| format!("--device {}: {e}", self.device);
        let device = if self.device == "auto" {
            Device::auto()
        } else {
            self.device.parse::<Device>().map_err(named)?
        };
        let device = device.check_available().map_err(named)?;
        match (self.precision.as_str(), device) {
            ("f32", _) => {}
            (p @ ("tf32" | "bf16"), Device::Cpu) => {
                return Err(format!(
                    "--precision {p} needs a GPU; {device} computes in f32 (give --device cuda)"
                ));
            }
            #[cfg(feature = "cuda")]
            (p @ ("tf32" | "bf16"), Device::Cuda(_)) => {
                use aoanet::cuda::kernels::gemm::Precision;
                aoanet::cuda::ops::set_matmul_precision(if p == "tf32" {
                    Precision::Tf32
                } else {
                    Precision::Bf16
                });
            }
            (p, _) => return Err(format!("--precision {p}: expected f32, tf32 or bf16")),
        }
        eprintln!(
            "device: {device}{}, {} products",
            device_name(device),
            self.precision
        );
        Ok(device)
    }
}

/// " (the GPU's name)" for a CUDA device, so the log says which driver answered (a real GPU,
/// or `cuda-emu`'s CPU stand-in when it is on the library path); empty for the CPU.
fn device_name(device: Device) -> String {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => aoanet::cuda::CudaDevice::get(ordinal)
            .map(|d| format!(" ({})", d.name()))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Model and training options from a config file, `--set` and the explicit flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OptionArgs {
    /// A JSON config file: an object of option names (training options such as `batch_size`,
    /// `learning_rate`, `max_epochs`, and model options such as `rnn_size`, `num_heads`), flat
    /// or grouped as {"model": {...}, "train": {...}}. Flags given on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set any option by name, e.g. `--set learning_rate=5e-4 --set rnn_size=512` (repeatable;
    /// the value is read as JSON, else as text). The names are the reference's `opts.py`
    /// names; -1 means "none" where the reference allows it.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Images per batch (`batch_size`, 10).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate (`learning_rate`; XE 2e-4, SCST 2e-5).
    #[arg(long, visible_alias = "lr")]
    pub learning_rate: Option<f64>,
    /// Stop after this many epochs (`max_epochs`; XE 25, SCST 40 counted from XE's epoch).
    #[arg(long)]
    pub max_epochs: Option<i64>,
    /// Stop once this many iterations are done (counted over both stages).
    #[arg(long)]
    pub max_iters: Option<i64>,
    /// Validate (and checkpoint) every this many iterations (`save_checkpoint_every`; XE
    /// 6000, SCST 3000).
    #[arg(long)]
    pub val_every: Option<u64>,
    /// Checkpoint every this many iterations (default: with each validation).
    #[arg(long)]
    pub save_every: Option<u64>,
    /// Val images per validation (`val_images_use`; default all).
    #[arg(long)]
    pub val_images: Option<usize>,
    /// Beam size of validation decoding (1 = greedy, the reference).
    #[arg(long)]
    pub val_beam_size: Option<usize>,
    /// Seed of initialisation, data order, dropout and sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// SCST baseline: greedy (the reference) or mean (of the other samples).
    #[arg(long, value_name = "greedy|mean")]
    pub baseline: Option<String>,
    /// Encode each caption row separately, as the reference's replicating loader (default:
    /// once per image, expanded).
    #[arg(long)]
    pub encode_per_caption: bool,
    /// Model width (`rnn_size` = `input_encoding_size`; the reference: 1024).
    #[arg(long)]
    pub rnn_size: Option<usize>,
}

/// Options split into model and training overrides, in the order given.
#[derive(Default, Debug)]
pub struct Overrides {
    /// Model options (`AoaConfig::set` names).
    pub model: Vec<(String, Value)>,
    /// Training options (`TrainOptions::set` names).
    pub train: Vec<(String, Value)>,
}

impl Overrides {
    fn push(&mut self, key: &str, value: Value) -> CmdResult {
        if TrainOptions::is_option(key) {
            self.train.push((key.to_string(), value));
        } else if is_model_option(key) {
            self.model.push((key.to_string(), value));
        } else {
            return Err(format!(
                "unknown option {key:?}: neither a training option (e.g. batch_size, \
                 learning_rate, max_epochs) nor a model option (e.g. rnn_size, num_heads)"
            ));
        }
        Ok(())
    }

    /// Applies the model overrides to `c`.
    pub fn apply_model(&self, c: &mut AoaConfig) -> CmdResult {
        for (k, v) in &self.model {
            c.set(k, v).map_err(err)?;
        }
        c.validate().map_err(err)
    }

    /// Applies the training overrides to `o`.
    pub fn apply_train(&self, o: &mut TrainOptions) -> CmdResult {
        for (k, v) in &self.train {
            o.set(k, v).map_err(err)?;
        }
        o.validate().map_err(err)
    }
}

fn is_model_option(key: &str) -> bool {
    AoaConfig::default().to_json().get(key).is_some()
}

/// Parses `text` as JSON, or takes it as a string.
fn value_of(text: &str) -> Value {
    json::parse(text, "value").unwrap_or_else(|_| Value::from(text))
}

impl OptionArgs {
    /// The overrides: config file first, then `--set`, then the flags.
    pub fn overrides(&self) -> CmdResult<Overrides> {
        let mut o = Overrides::default();
        if let Some(path) = &self.config {
            let v = json::read_file(path).map_err(err)?;
            let fields = v.as_object().ok_or_else(|| {
                format!("{}: a config file holds one JSON object", path.display())
            })?;
            for (k, val) in fields {
                match (k.as_str(), val) {
                    ("model" | "train", Value::Object(inner)) => {
                        for (ik, iv) in inner {
                            o.push(ik, iv.clone())
                                .map_err(|e| format!("{}: {e}", path.display()))?;
                        }
                    }
                    _ => o
                        .push(k, val.clone())
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                }
            }
        }
        for s in &self.set {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| format!("--set {s:?}: expected KEY=VALUE"))?;
            o.push(k.trim(), value_of(v.trim()))?;
        }
        let mut flag = |k: &str, v: Option<Value>| -> CmdResult {
            match v {
                Some(v) => o.push(k, v),
                None => Ok(()),
            }
        };
        flag("batch_size", self.batch_size.map(Value::from))?;
        flag("learning_rate", self.learning_rate.map(Value::from))?;
        flag("max_epochs", self.max_epochs.map(Value::from))?;
        flag("max_iters", self.max_iters.map(Value::from))?;
        flag("val_every", self.val_every.map(|v| Value::from(v as usize)))?;
        flag(
            "save_every",
            self.save_every.map(|v| Value::from(v as usize)),
        )?;
        flag("val_images", self.val_images.map(Value::from))?;
        flag("val_beam_size", self.val_beam_size.map(Value::from))?;
        flag("seed", self.seed.map(|v| Value::from(v.to_string())))?;
        flag("baseline", self.baseline.clone().map(Value::from))?;
        flag(
            "encode_per_caption",
            self.encode_per_caption.then_some(Value::from(true)),
        )?;
        if let Some(r) = self.rnn_size {
            flag("rnn_size", Some(Value::from(r)))?;
            flag("input_encoding_size", Some(Value::from(r)))?;
        }
        Ok(o)
    }
}

/// Metric selection.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MetricArgs {
    /// Comma-separated metrics: bleu, meteor, rouge, cider, spice, all. Default: BLEU,
    /// ROUGE-L, CIDEr-D, METEOR when its data is installed, SPICE with --spice-jar. Naming one
    /// makes a missing prerequisite an error before any work. CIDEr-D is always computed.
    #[arg(long, value_name = "LIST")]
    pub metrics: Option<String>,
    /// SPICE's spice-1.0.jar (needs Java and the CoreNLP 3.6.0 jars in its lib/).
    #[arg(long, value_name = "PATH")]
    pub spice_jar: Option<PathBuf>,
}

impl MetricArgs {
    /// The scoring set, prerequisites checked; notes about skipped metrics go to stderr.
    pub fn scoring(&self, list: Option<&str>) -> CmdResult<Scoring> {
        let s = self.scoring_quiet(list)?;
        for n in &s.notes {
            eprintln!("note: {n} (reported as null)");
        }
        Ok(s)
    }

    /// [`MetricArgs::scoring`] without the notes (when they were already printed).
    pub fn scoring_quiet(&self, list: Option<&str>) -> CmdResult<Scoring> {
        let list = list.or(self.metrics.as_deref());
        let parsed = list.map(Metric::parse_list).transpose().map_err(err)?;
        Scoring::new(parsed.as_deref(), self.spice_jar.as_deref()).map_err(err)
    }
}

/// Installs the SIGINT/SIGTERM handler: the first signal asks the loop to stop after the
/// current step (and save); a second one exits at once.
pub fn stop_flag() -> CmdResult<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let s = stop.clone();
    ctrlc::set_handler(move || {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            s.store(true, Ordering::SeqCst);
            eprintln!(
                "\nstop requested: finishing the current step and saving a checkpoint \
                 (signal again to quit without saving)"
            );
        } else {
            eprintln!("second stop request: quitting without saving");
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    Ok(stop)
}

/// Prints trainer events: a progress line every `every` seconds (and the first steps),
/// validations, checkpoints, notes.
pub struct Printer {
    last: Option<Instant>,
    every: f64,
    tty: bool,
    steps: u64,
    /// Prefix of every line (the demo's stage name).
    pub prefix: String,
}

impl Printer {
    /// Progress at most every `every` seconds.
    pub fn new(every: f64) -> Printer {
        Printer {
            last: None,
            every,
            tty: std::io::stderr().is_terminal(),
            steps: 0,
            prefix: String::new(),
        }
    }

    /// Handles one event.
    pub fn event(&mut self, e: Event) {
        match e {
            Event::Step(p) => {
                self.steps += 1;
                let due = self
                    .last
                    .is_none_or(|t| t.elapsed().as_secs_f64() >= self.every);
                if due || self.steps <= 3 {
                    self.last = Some(Instant::now());
                    if self.tty {
                        eprint!("\r\x1b[2K{}{}", self.prefix, p.line());
                    } else {
                        eprintln!("{}{}", self.prefix, p.line());
                    }
                }
            }
            Event::Validation(v) => {
                self.end_line();
                let shown: Vec<String> = v
                    .metrics
                    .iter()
                    .filter(|(k, _)| matches!(k.as_str(), "CIDEr" | "Bleu_4" | "METEOR" | "loss"))
                    .map(|(k, x)| format!("{k} {x:.4}"))
                    .collect();
                eprintln!(
                    "{}validation at iteration {} ({} images, {:.1}s): {}{}",
                    self.prefix,
                    v.iteration,
                    v.images,
                    v.seconds,
                    shown.join("  "),
                    if v.improved { "  (best so far)" } else { "" }
                );
            }
            Event::Checkpoint { path, iteration } => {
                self.end_line();
                eprintln!(
                    "{}checkpoint at iteration {iteration}: {}",
                    self.prefix,
                    path.display()
                );
            }
            Event::Note(n) => {
                self.end_line();
                eprintln!("{}{n}", self.prefix);
            }
        }
    }

    /// Ends a `\r` progress line.
    pub fn end_line(&mut self) {
        if self.tty && self.last.is_some() {
            eprintln!();
            self.last = None;
        }
    }
}

/// `runs/<what>-<UTC time>` under the current folder.
pub fn default_run_dir(what: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    let (y, m, d) = civil_from_days(days as i64);
    Path::new("runs").join(format!(
        "{what}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    ))
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Prints a metrics table: one row per key, one column per named result.
pub fn print_table(columns: &[(&str, &[(String, f64)])]) {
    let mut head = format!("{:<8}", "metric");
    for (name, _) in columns {
        head.push_str(&format!("  {name:>9}"));
    }
    println!("{head}");
    for key in KEYS {
        if columns
            .iter()
            .all(|(_, m)| !m.iter().any(|(k, _)| k == key))
        {
            continue;
        }
        let mut line = format!("{key:<8}");
        for (_, m) in columns {
            match m.iter().find(|(k, _)| k == key) {
                Some((_, v)) => line.push_str(&format!("  {v:>9.4}")),
                None => line.push_str(&format!("  {:>9}", "null")),
            }
        }
        println!("{line}");
    }
}

/// The toolkit keys as a JSON object (`null` where not computed).
pub fn metrics_json(m: &[(String, f64)]) -> Value {
    json::object(KEYS.iter().map(|&k| {
        (
            k,
            m.iter()
                .find(|(x, _)| x == k)
                .map_or(Value::Null, |(_, v)| Value::from(*v)),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
