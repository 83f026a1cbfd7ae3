//! Training: losses, Adam, learning-rate schedules, the training loop, checkpoints.
//!
//! | file | what it defines |
//! | --- | --- |
//! | `loss` | the masked cross-entropy, the label-smoothed KL loss, `RewardCriterion` |
//! | `adam` | `torch.optim.Adam` with the element-wise gradient clamp, state for checkpoints |
//! | `schedule` | XE step decay, scheduled-sampling probability, `ReduceLROnPlateau` |

pub mod adam;
pub mod loss;
pub mod schedule;

pub use adam::{Adam, AdamConfig, AdamParamState, AdamState};
pub use loss::{label_smoothing_loss, lm_loss, reward_loss, reward_mask};
pub use schedule::{
    PlateauConfig, PlateauMode, ReduceLrOnPlateau, ScheduledSampling, StepDecay, ThresholdMode,
};
