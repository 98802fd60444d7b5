//! Freeze masks: which layers train, resolved by Keras layer name.

use super::arch::Architecture;
use crate::config::FreezeRule;

/// `mask[i]` is true when `arch.layers[i]` trains. Unknown names and patterns that match nothing
/// are errors listing the known layer names.
pub fn trainable_mask(rule: &FreezeRule, arch: &Architecture) -> Result<Vec<bool>, String> {
    let _ = (rule, arch);
    todo!("model::freeze::trainable_mask")
}
