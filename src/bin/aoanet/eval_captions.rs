//! `aoanet eval-captions`: score caption results with the coco-caption metrics, in process.

use aoanet::metrics::input::load;
use aoanet::metrics::spice::Spice;
use aoanet::metrics::{Evaluation, Evaluator, ExternalMetric, KEYS, Metric};
use std::path::{Path, PathBuf};

/// Arguments of `eval-captions`.
#[derive(clap::Args)]
pub struct Args {
    /// The captions to score: a COCO results JSON `[{image_id, caption}]`, or one file of
    /// `[{image_name or image_id, captions, prediction}]` holding references and predictions.
    #[arg(long, value_name = "R")]
    results: PathBuf,
    /// COCO annotations JSON holding the references of a COCO results file.
    #[arg(long, value_name = "A")]
    references: Option<PathBuf>,
    /// Also write the scores as JSON: the toolkit's keys at top level (null where not
    /// computed) and `per_image`.
    #[arg(long, value_name = "J")]
    json: Option<PathBuf>,
    /// Comma-separated metrics: bleu, meteor, rouge, cider, spice, all. Default: BLEU, ROUGE-L,
    /// CIDEr-D, METEOR when its data is available, SPICE when --spice-jar is given. Naming
    /// meteor or spice makes a missing prerequisite an error before any work.
    #[arg(long, value_name = "LIST")]
    metrics: Option<String>,
    /// Run SPICE with this spice-1.0.jar (needs Java and the CoreNLP 3.6.0 jars in its lib/).
    #[arg(long, value_name = "PATH")]
    spice_jar: Option<PathBuf>,
}

/// The METEOR hook: the native METEOR 1.5 (`aoanet::metrics::meteor`) over the data found
/// through `$AOANET_METEOR_DATA` or the default location; `Err` says how to install it.
fn open_meteor() -> Result<Box<dyn ExternalMetric>, String> {
    aoanet::train::MeteorMetric::open_default()
        .map(|m| Box::new(m) as Box<dyn ExternalMetric>)
        .map_err(|e| e.to_string())
}

/// Runs the subcommand; `Err` is the message for stderr.
pub fn run(args: &Args) -> Result<(), String> {
    let explicit = match &args.metrics {
        Some(list) => Some(Metric::parse_list(list).map_err(|e| e.to_string())?),
        None => None,
    };
    let wants = |m: Metric| explicit.as_ref().is_none_or(|l| l.contains(&m));
    let named = |m: Metric| explicit.as_ref().is_some_and(|l| l.contains(&m));

    // Prerequisites first: an explicitly requested metric that cannot run stops here.
    let meteor = if wants(Metric::Meteor) {
        match open_meteor() {
            Ok(m) => Some(m),
            Err(why) if named(Metric::Meteor) => {
                return Err(format!("METEOR was requested but is unavailable: {why}"));
            }
            Err(why) => {
                eprintln!("warning: METEOR not computed (reported as null): {why}");
                None
            }
        }
    } else {
        None
    };
    if args.spice_jar.is_some() && !wants(Metric::Spice) {
        eprintln!("note: --spice-jar ignored: spice is not in --metrics");
    }
    let spice = match (&args.spice_jar, wants(Metric::Spice)) {
        (Some(jar), true) => Some(Spice::new(jar).map_err(|e| e.to_string())?),
        (None, true) if named(Metric::Spice) => {
            return Err("SPICE was requested but needs --spice-jar PATH (spice-1.0.jar; Java and the CoreNLP 3.6.0 jars)".into());
        }
        _ => None,
    };

    let (set, info) = load(&args.results, args.references.as_deref()).map_err(|e| e.to_string())?;
    if info.images_without_result > 0 {
        eprintln!(
            "note: {} annotated image(s) have no result and are not scored",
            info.images_without_result
        );
    }
    let mut evaluator = Evaluator::offline();
    evaluator.bleu = wants(Metric::Bleu);
    evaluator.rouge = wants(Metric::Rouge);
    evaluator.cider = wants(Metric::Cider);
    evaluator.meteor = meteor.as_deref();
    evaluator.spice = spice.as_ref().map(|s| s as &dyn ExternalMetric);
    let eval = evaluator.evaluate(&set).map_err(|e| e.to_string())?;

    print_table(&eval, &args.results);
    if let Some(path) = &args.json {
        let mut text = eval.to_json().to_json_pretty();
        text.push('\n');
        aoanet::io::write_file(path, text.as_bytes()).map_err(|e| e.to_string())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn print_table(eval: &Evaluation, results: &Path) {
    println!("{} image(s) from {}", eval.keys.len(), results.display());
    println!("{:<8}  score", "metric");
    for key in KEYS {
        match eval.get(key) {
            Some(v) => println!("{key:<8}  {v:.6}"),
            None => println!("{key:<8}  null (not computed)"),
        }
    }
    if let Some(s) = &eval.bleu_stats {
        println!(
            "BLEU counts: testlen {} reflen {} guess {:?} correct {:?} ratio {:.6}",
            s.testlen,
            s.reflen,
            s.guess,
            s.correct,
            s.ratio()
        );
    }
}
