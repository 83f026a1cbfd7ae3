//! Which caption metrics a run computes, with their prerequisites checked up front: a metric
//! named explicitly that cannot run (METEOR without its data, SPICE without its jar) is an
//! error here, before any training or decoding, with what to do about it.

use crate::metrics::meteor::{Meteor, MeteorData};
use crate::metrics::spice::Spice;
use crate::metrics::{Evaluator, ExternalMetric, ImageKey, Metric};
use crate::{Error, Result};
use std::path::Path;

/// The native METEOR 1.5 as an [`ExternalMetric`] (key `METEOR`).
pub struct MeteorMetric(pub Meteor);

impl ExternalMetric for MeteorMetric {
    fn key(&self) -> &'static str {
        "METEOR"
    }

    fn score(
        &self,
        _keys: &[ImageKey],
        candidates: &[String],
        references: &[Vec<String>],
    ) -> Result<(f64, Vec<f64>)> {
        let r = self.0.evaluate(candidates, references)?;
        Ok((r.corpus, r.per_image))
    }
}

impl MeteorMetric {
    /// METEOR from `$AOANET_METEOR_DATA` or the default location; `Err` says how to install
    /// the data when there is none.
    pub fn open_default() -> Result<MeteorMetric> {
        match Meteor::open_default()? {
            Some(m) => Ok(MeteorMetric(m)),
            None => Err(Error::invalid(MeteorData::setup_hint())),
        }
    }
}

/// The metrics of a run and their scorers.
pub struct Scoring {
    /// BLEU-1..4.
    pub bleu: bool,
    /// ROUGE-L.
    pub rouge: bool,
    /// CIDEr-D.
    pub cider: bool,
    /// METEOR, when requested (or by default when its data is installed).
    pub meteor: Option<MeteorMetric>,
    /// SPICE, when requested.
    pub spice: Option<Spice>,
    /// Why a default metric is not computed (for a note to the user).
    pub notes: Vec<String>,
}

impl Scoring {
    /// BLEU, ROUGE-L and CIDEr-D only: nothing to install.
    pub fn offline() -> Scoring {
        Scoring {
            bleu: true,
            rouge: true,
            cider: true,
            meteor: None,
            spice: None,
            notes: Vec::new(),
        }
    }

    /// The metrics `list` names (`None`: BLEU, ROUGE-L, CIDEr-D, METEOR if its data is
    /// installed, SPICE if `spice_jar` is given). CIDEr-D is always computed: training keeps
    /// the best model by it. A named metric whose prerequisite is missing is an error.
    pub fn new(list: Option<&[Metric]>, spice_jar: Option<&Path>) -> Result<Scoring> {
        let named = |m: Metric| list.is_some_and(|l| l.contains(&m));
        let wants = |m: Metric| list.is_none_or(|l| l.contains(&m));
        let mut notes = Vec::new();
        let meteor = if wants(Metric::Meteor) {
            match MeteorMetric::open_default() {
                Ok(m) => Some(m),
                Err(e) if named(Metric::Meteor) => {
                    return Err(Error::invalid(format!(
                        "METEOR was requested but is unavailable: {e}"
                    )));
                }
                Err(e) => {
                    notes.push(format!("METEOR not computed: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let spice = match (spice_jar, wants(Metric::Spice)) {
            (Some(jar), true) => Some(Spice::new(jar)?),
            (None, true) if named(Metric::Spice) => {
                return Err(Error::invalid(
                    "SPICE was requested but needs --spice-jar PATH (spice-1.0.jar, with Java \
                     and the CoreNLP 3.6.0 jars in its lib/)",
                ));
            }
            _ => None,
        };
        Ok(Scoring {
            bleu: wants(Metric::Bleu),
            rouge: wants(Metric::Rouge),
            cider: true,
            meteor,
            spice,
            notes,
        })
    }

    /// The evaluator over these metrics.
    pub fn evaluator(&self) -> Evaluator<'_> {
        Evaluator {
            bleu: self.bleu,
            rouge: self.rouge,
            cider: self.cider,
            meteor: self.meteor.as_ref().map(|m| m as &dyn ExternalMetric),
            spice: self.spice.as_ref().map(|s| s as &dyn ExternalMetric),
        }
    }

    /// The toolkit keys this set computes, in the toolkit's order.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        if self.bleu {
            k.extend(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]);
        }
        if self.meteor.is_some() {
            k.push("METEOR");
        }
        if self.rouge {
            k.push("ROUGE_L");
        }
        if self.cider {
            k.push("CIDEr");
        }
        if self.spice.is_some() {
            k.push("SPICE");
        }
        k
    }
}
