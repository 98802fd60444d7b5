//! Freeze masks: which layers train, resolved by Keras layer name.
//!
//! Pure decisions on the architecture description; applying a mask to parameters is `train`'s job.
//! Patterns are globs over whole names: `*` matches any run of characters, `?` exactly one.

use super::arch::Architecture;
use crate::config::FreezeRule;

/// `mask[i]` is true when `arch.layers[i]` trains. Unknown names and patterns that match nothing
/// are errors listing the known layer names.
pub fn trainable_mask(rule: &FreezeRule, arch: &Architecture) -> Result<Vec<bool>, String> {
    let names = arch.layer_names();
    match rule {
        FreezeRule::AllTrainable => Ok(vec![true; names.len()]),
        FreezeRule::TrainableFrom(first) => {
            let start = names
                .iter()
                .position(|n| n == first)
                .ok_or_else(|| format!("unknown layer {first:?} (known: {})", names.join(", ")))?;
            Ok((0..names.len()).map(|i| i >= start).collect())
        }
        FreezeRule::Freeze(globs) => Ok(matching(globs, &names)?
            .into_iter()
            .map(|frozen| !frozen)
            .collect()),
        FreezeRule::Train(globs) => matching(globs, &names),
    }
}

/// For each name, whether any glob matches it; a glob that matches nothing is an error, since it
/// is almost certainly a typo that would otherwise silently change which layers train.
fn matching(globs: &[String], names: &[&str]) -> Result<Vec<bool>, String> {
    let mut hit = vec![false; names.len()];
    for glob in globs {
        let mut any = false;
        for (hit, name) in hit.iter_mut().zip(names) {
            if glob_matches(glob, name) {
                *hit = true;
                any = true;
            }
        }
        if !any {
            return Err(format!(
                "pattern {glob:?} matches no layer (known: {})",
                names.join(", ")
            ));
        }
    }
    Ok(hit)
}

/// Whole-string glob match with `*` (any run, including none) and `?` (one character).
fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and how much of the name it has swallowed so far.
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if let Some((star, swallowed)) = backtrack {
            pi = star + 1;
            ni = swallowed + 1;
            backtrack = Some((star, swallowed + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeadSpec, ModelConfig, Weights};
    use crate::model::arch::Layer;

    fn notebook_arch() -> Architecture {
        let model = ModelConfig {
            architecture: "vgg16".into(),
            channels: [64, 128, 256, 512, 512],
            weights: Weights::None,
            conv_init: crate::config::ConvInit::GlorotUniform,
            head: HeadSpec::default(),
        };
        Architecture::build(&model, 150, 150).unwrap()
    }

    fn trainable(rule: &FreezeRule) -> (Vec<String>, usize) {
        let arch = notebook_arch();
        let mask = trainable_mask(rule, &arch).unwrap();
        let layers: Vec<&Layer> = arch
            .layers
            .iter()
            .zip(&mask)
            .filter(|(_, &t)| t)
            .map(|(l, _)| l)
            .collect();
        let params = layers.iter().map(|l| l.params()).sum();
        let with_weights = layers
            .iter()
            .filter(|l| l.has_weights())
            .map(|l| l.name.clone())
            .collect();
        (with_weights, params)
    }

    const ALL: &str = "block1_conv1, block1_conv2, block1_pool, block2_conv1, block2_conv2, \
        block2_pool, block3_conv1, block3_conv2, block3_conv3, block3_pool, block4_conv1, \
        block4_conv2, block4_conv3, block4_pool, block5_conv1, block5_conv2, block5_conv3, \
        block5_pool, flatten, dense, dense_1";

    /// The notebook's fine-tuning loop (from block5_conv1 on) and Keras's summary: 9,177,089
    /// trainable parameters (keras-notebook-semantics.md, key numbers).
    #[test]
    fn notebook_fine_tuning_trains_block5_and_the_head() {
        let (layers, params) = trainable(&FreezeRule::TrainableFrom("block5_conv1".into()));
        assert_eq!(
            layers,
            [
                "block5_conv1",
                "block5_conv2",
                "block5_conv3",
                "dense",
                "dense_1"
            ]
        );
        assert_eq!(params, 9_177_089);
    }

    /// `conv_base.trainable = False`: only the new head trains, 2,097,665 parameters.
    #[test]
    fn freezing_the_blocks_leaves_only_the_head() {
        let (layers, params) = trainable(&FreezeRule::Freeze(vec!["block*".into()]));
        assert_eq!(layers, ["dense", "dense_1"]);
        assert_eq!(params, 2_097_665);
        let (layers, params) = trainable(&FreezeRule::Train(vec!["dense*".into()]));
        assert_eq!(layers, ["dense", "dense_1"]);
        assert_eq!(params, 2_097_665);
    }

    #[test]
    fn all_trainable_is_the_keras_default() {
        let arch = notebook_arch();
        let mask = trainable_mask(&FreezeRule::AllTrainable, &arch).unwrap();
        assert_eq!(mask, vec![true; arch.layers.len()]);
        assert_eq!(trainable(&FreezeRule::AllTrainable).1, 16_812_353);
    }

    #[test]
    fn patterns_combine_and_use_question_marks() {
        let (layers, _) = trainable(&FreezeRule::Train(vec![
            "block5_conv?".into(),
            "dense_1".into(),
        ]));
        assert_eq!(
            layers,
            ["block5_conv1", "block5_conv2", "block5_conv3", "dense_1"]
        );
        let (layers, _) = trainable(&FreezeRule::Freeze(vec![
            "block*_conv*".into(),
            "block?_pool".into(),
        ]));
        assert_eq!(layers, ["dense", "dense_1"]);
    }

    #[test]
    fn unknown_names_and_empty_patterns_list_the_layers() {
        let arch = notebook_arch();
        let cases = [
            (
                FreezeRule::TrainableFrom("block6_conv1".into()),
                format!("unknown layer \"block6_conv1\" (known: {ALL})"),
            ),
            (
                FreezeRule::Freeze(vec!["block*".into(), "blok*".into()]),
                format!("pattern \"blok*\" matches no layer (known: {ALL})"),
            ),
            (
                FreezeRule::Train(vec!["Dense".into()]),
                format!("pattern \"Dense\" matches no layer (known: {ALL})"),
            ),
        ];
        for (rule, expected) in cases {
            assert_eq!(
                trainable_mask(&rule, &arch).unwrap_err(),
                expected,
                "{rule:?}"
            );
        }
    }

    #[test]
    fn globs_match_whole_names() {
        let cases = [
            ("*", "dense", true),
            ("", "", true),
            ("", "dense", false),
            ("dense", "dense_1", false),
            ("dense*", "dense_1", true),
            ("*_1", "dense_1", true),
            ("*conv*", "block1_conv2", true),
            ("b*k*_c*2", "block1_conv2", true),
            ("b*k*_c*3", "block1_conv2", false),
            ("block?_pool", "block5_pool", true),
            ("block?_pool", "block10_pool", false),
            ("**pool", "block1_pool", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }
}
