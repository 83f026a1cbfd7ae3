//! Training: losses, Adam, learning-rate schedules, the training loop, checkpoints.
//!
//! | file | what it defines |
//! | --- | --- |
//! | `loss` | the masked cross-entropy, the label-smoothed KL loss, `RewardCriterion` |
//! | `adam` | `torch.optim.Adam` with the element-wise gradient clamp, state for checkpoints |
//! | `schedule` | XE step decay, scheduled-sampling probability, `ReduceLROnPlateau` |
//! | [`options`] | every training option with `train.sh`'s defaults per stage; config files and flags |
//! | [`batch`] | a loader batch as tensors, targets and masks |
//! | [`decoding`] | the decoding training needs: captions for images, the self-critical sampler |
//! | [`rewards`] | the SCST reward: CIDEr-D on token ids with training frequencies, baselines |
//! | [`scoring`] | which caption metrics a run computes; prerequisites checked up front |
//! | [`evaluate`] | decode a split, score it, write COCO results; the validation loss |
//! | [`history`] | the history records (`history.jsonl`) |
//! | [`checkpoint`] | checkpoints that survive anything, and converted reference checkpoints |
//! | [`report_data`] | the history and decoded images as the report's records and cards |
//! | [`trainer`] | the loop: steps, validation, best model, checkpoints, stop requests |

pub mod adam;
pub mod batch;
pub mod checkpoint;
pub mod decoding;
pub mod evaluate;
pub mod history;
pub mod loss;
pub mod options;
pub mod report_data;
pub mod rewards;
pub mod schedule;
pub mod scoring;
pub mod trainer;

pub use adam::{Adam, AdamConfig, AdamParamState, AdamState, zero_grad};
pub use checkpoint::{Checkpoint, TrainState};
pub use evaluate::{EvalOptions, SplitEval, evaluate_split};
pub use history::HistoryRecord;
pub use loss::{
    label_smoothing_loss, label_smoothing_loss_from_logits, lm_loss, reward_loss, reward_mask,
};
pub use options::{Baseline, Stage, TrainOptions};
pub use schedule::{
    PlateauConfig, PlateauMode, ReduceLrOnPlateau, ScheduledSampling, StepDecay, ThresholdMode,
};
pub use scoring::{MeteorMetric, Scoring};
pub use trainer::{Event, Hooks, NanTarget, Outcome, PhaseTimes, Progress, TrainEnv, Trainer};
