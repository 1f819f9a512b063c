//! Magika's content-type model: its input features and its labels.
//!
//! This follows magika's own Python implementation (`magika/magika.py`,
//! version 1.0.3, "features extraction v2"), driven by the model's config
//! (`config.min.json` in the wheel, `magika.config.json` from
//! `scripts/models.sh`):
//!
//! * read at most `block_size` bytes from the start and from the end;
//! * strip ASCII whitespace: leading from the start block, trailing from the
//!   end block;
//! * `beg`: the first `beg_size` bytes of the stripped start, padded after
//!   with `padding_token`; `end`: the last `end_size` bytes of the stripped
//!   end, padded before; the model input is `beg ++ end` as INT32;
//! * files under `min_file_size_for_dl` bytes, or with fewer meaningful bytes
//!   than that after stripping, are not given to the model: they are `txt`
//!   if they decode as UTF-8, else `unknown` (empty files are `empty`);
//! * the label is the arg-max of the scores, mapped through `overwrite_map`;
//!   below its threshold (`thresholds`, else `medium_confidence_threshold`)
//!   it falls back to `txt` or `unknown` by whether the label is text
//!   (from the content-type knowledge base), magika's default
//!   "high confidence" mode.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use crate::protocol::InferRequest;
use crate::tensor::{Tensor, TensorData};

/// The model's config (`config.min.json`); only what inference needs.
#[derive(Debug, Clone, Deserialize)]
pub struct MagikaConfig {
    /// Bytes taken from the start.
    pub beg_size: usize,
    /// Bytes taken from the middle (must be 0: magika 1.x does not use it).
    pub mid_size: usize,
    /// Bytes taken from the end.
    pub end_size: usize,
    /// Whether bytes at fixed offsets are inputs (must be false).
    pub use_inputs_at_offsets: bool,
    /// The generic confidence threshold.
    pub medium_confidence_threshold: f32,
    /// Smaller files are not given to the model.
    pub min_file_size_for_dl: usize,
    /// The value that pads short inputs (256: not a byte).
    pub padding_token: i32,
    /// How much is read from each end.
    pub block_size: usize,
    /// The label of each model output, in order.
    pub target_labels_space: Vec<String>,
    /// Per-label confidence thresholds.
    #[serde(default)]
    pub thresholds: HashMap<String, f32>,
    /// Labels reported as others.
    #[serde(default)]
    pub overwrite_map: HashMap<String, String>,
}

/// Magika's content-type knowledge base (`content_types_kb.min.json`): which
/// labels are text.
#[derive(Debug, Clone, Default)]
pub struct ContentTypes {
    is_text: HashMap<String, bool>,
}

impl ContentTypes {
    /// Parses the knowledge base.
    pub fn from_json(json: &[u8]) -> Result<ContentTypes, String> {
        #[derive(Deserialize)]
        struct Info {
            #[serde(default)]
            is_text: bool,
        }
        let kb: HashMap<String, Info> = serde_json::from_slice(json)
            .map_err(|e| format!("not a magika content-type knowledge base: {e}"))?;
        Ok(ContentTypes {
            is_text: kb.into_iter().map(|(k, v)| (k, v.is_text)).collect(),
        })
    }

    /// Whether the label names a text type (`None` if unknown).
    pub fn is_text(&self, label: &str) -> Option<bool> {
        self.is_text.get(label).copied()
    }
}

/// What a file gives the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Features {
    /// The model input: `beg_size + end_size` values, bytes or padding.
    Model(Vec<i32>),
    /// Too few meaningful bytes for the model; the label is decided without it.
    FewBytes(Prediction),
}

/// A content-type decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Prediction {
    /// The label to report.
    pub label: String,
    /// The model's own arg-max label (`None` if the model was not used).
    pub model_label: Option<String>,
    /// The model's score for its label, in thousandths (`None` without model).
    pub score_milli: Option<u32>,
}

/// ASCII whitespace as Python's `bytes.strip()` sees it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl MagikaConfig {
    /// Parses the config; refuses settings this implementation does not do.
    pub fn from_json(json: &[u8]) -> Result<MagikaConfig, String> {
        let c: MagikaConfig =
            serde_json::from_slice(json).map_err(|e| format!("not a magika model config: {e}"))?;
        if c.mid_size != 0 || c.use_inputs_at_offsets {
            return Err("magika config uses mid_size or inputs at offsets, which magika 1.x (and this client) does not".into());
        }
        if c.beg_size >= c.block_size || c.end_size >= c.block_size || c.min_file_size_for_dl == 0 {
            return Err("magika config has inconsistent sizes".into());
        }
        Ok(c)
    }

    /// The model input length (`beg_size + end_size`).
    pub fn input_len(&self) -> usize {
        self.beg_size + self.end_size
    }

    /// The features of a whole file held in memory.
    pub fn features(&self, content: &[u8]) -> Features {
        let n = content.len().min(self.block_size);
        self.features_from_blocks(content.len(), &content[..n], &content[content.len() - n..])
    }

    /// The features of a file, reading only its first and last `block_size`
    /// bytes.
    pub fn features_of_file(&self, path: &Path) -> io::Result<Features> {
        let mut f = File::open(path)?;
        let size = f.metadata()?.len();
        let n = size.min(self.block_size as u64) as usize;
        let mut beg = vec![0; n];
        f.read_exact(&mut beg)?;
        let mut end = vec![0; n];
        f.seek(SeekFrom::Start(size - n as u64))?;
        f.read_exact(&mut end)?;
        Ok(self.features_from_blocks(size as usize, &beg, &end))
    }

    fn features_from_blocks(&self, size: usize, beg: &[u8], end: &[u8]) -> Features {
        if size == 0 {
            return Features::FewBytes(Prediction {
                label: "empty".into(),
                model_label: None,
                score_milli: None,
            });
        }
        let beg_start = beg.iter().position(|&b| !is_space(b)).unwrap_or(beg.len());
        let beg = &beg[beg_start..];
        let end_stop = end.iter().rposition(|&b| !is_space(b)).map_or(0, |i| i + 1);
        let end = &end[..end_stop];
        // Not enough meaningful bytes: the n-th beg feature would be padding.
        if size < self.min_file_size_for_dl || beg.len() < self.min_file_size_for_dl {
            let label = if std::str::from_utf8(beg).is_ok() {
                "txt"
            } else {
                "unknown"
            };
            return Features::FewBytes(Prediction {
                label: label.into(),
                model_label: None,
                score_milli: None,
            });
        }
        let mut x = Vec::with_capacity(self.input_len());
        let b = &beg[..beg.len().min(self.beg_size)];
        x.extend(b.iter().map(|&v| i32::from(v)));
        x.resize(self.beg_size, self.padding_token);
        let e = &end[end.len().saturating_sub(self.end_size)..];
        x.resize(self.beg_size + self.end_size - e.len(), self.padding_token);
        x.extend(e.iter().map(|&v| i32::from(v)));
        Features::Model(x)
    }

    /// An inference request for one file's model features, for the model's
    /// input named `input` (magika's is `bytes`, shape `[1, beg+end]`).
    pub fn request(&self, input: &str, features: Vec<i32>) -> Result<InferRequest, String> {
        let len = features.len();
        let t = Tensor::new(input, vec![1, len], TensorData::I32(features))
            .map_err(|e| e.to_string())?;
        Ok(InferRequest::new().input(t))
    }

    /// The label for one file's model scores.
    pub fn label(&self, scores: &[f32], kb: Option<&ContentTypes>) -> Result<Prediction, String> {
        if scores.len() != self.target_labels_space.len() {
            return Err(format!(
                "the model gave {} scores, the config names {} labels",
                scores.len(),
                self.target_labels_space.len()
            ));
        }
        let (best, &score) = scores
            .iter()
            .enumerate()
            .fold(None, |acc: Option<(usize, &f32)>, (i, s)| match acc {
                Some((_, b)) if b >= s => acc,
                _ => Some((i, s)),
            })
            .ok_or("the model gave no scores")?;
        let model_label = self.target_labels_space[best].clone();
        let mut label = self
            .overwrite_map
            .get(&model_label)
            .cloned()
            .unwrap_or_else(|| model_label.clone());
        let threshold = self
            .thresholds
            .get(&model_label)
            .copied()
            .unwrap_or(self.medium_confidence_threshold);
        if score < threshold {
            label = match kb.and_then(|kb| kb.is_text(&label)) {
                Some(true) => "txt".into(),
                Some(false) => "unknown".into(),
                None => label,
            };
        }
        Ok(Prediction {
            label,
            model_label: Some(model_label),
            score_milli: Some((score.clamp(0.0, 1.0) * 1000.0).round() as u32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MagikaConfig {
        MagikaConfig::from_json(
            br#"{"beg_size":4,"mid_size":0,"end_size":4,"use_inputs_at_offsets":false,
            "medium_confidence_threshold":0.5,"min_file_size_for_dl":3,"padding_token":256,
            "block_size":8,"target_labels_space":["a","b","randomtxt","c"],
            "thresholds":{"b":0.9},"overwrite_map":{"randomtxt":"txt"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn features_strip_pad_and_take_both_ends() {
        let c = config();
        // Whitespace stripped at both ends, padding after beg and before end.
        assert_eq!(
            c.features(b"  \tabcde\n\n"),
            Features::Model(vec![97, 98, 99, 100, 98, 99, 100, 101])
        );
        assert_eq!(
            c.features(b"xyz"),
            Features::Model(vec![120, 121, 122, 256, 256, 120, 121, 122])
        );
        // Only block_size bytes are read from each end: here 8 of 12.
        assert_eq!(
            c.features(b"0123456789AB"),
            Features::Model(vec![48, 49, 50, 51, 56, 57, 65, 66])
        );
        // Too few meaningful bytes: decided without the model.
        let few = |s: &[u8]| match c.features(s) {
            Features::FewBytes(p) => p.label,
            other => panic!("{other:?}"),
        };
        assert_eq!(few(b""), "empty");
        assert_eq!(few(b"ab"), "txt");
        assert_eq!(few(b"     a\n"), "txt");
        assert_eq!(few(b"\xff\xfe"), "unknown");
    }

    #[test]
    fn labels_follow_thresholds_and_overwrites() {
        let c = config();
        let mut kb = ContentTypes::default();
        kb.is_text.insert("b".into(), false);
        kb.is_text.insert("a".into(), true);
        let label = |s: &[f32]| c.label(s, Some(&kb)).unwrap().label;
        assert_eq!(label(&[0.6, 0.1, 0.1, 0.2]), "a");
        assert_eq!(label(&[0.4, 0.1, 0.1, 0.2]), "txt"); // a is text, below 0.5
        assert_eq!(label(&[0.0, 0.85, 0.1, 0.05]), "unknown"); // b needs 0.9
        assert_eq!(label(&[0.0, 0.95, 0.0, 0.05]), "b");
        assert_eq!(label(&[0.0, 0.0, 0.9, 0.1]), "txt"); // overwrite map
        let p = c.label(&[0.0, 0.95, 0.0, 0.05], None).unwrap();
        assert_eq!(p.model_label.as_deref(), Some("b"));
        assert_eq!(p.score_milli, Some(950));
        assert!(c.label(&[1.0], None).is_err());
    }

    #[test]
    fn file_features_match_in_memory_ones() {
        let c = config();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data = b"   hello, world, this is longer than a block  \n";
        std::fs::write(&p, data).unwrap();
        assert_eq!(c.features_of_file(&p).unwrap(), c.features(data));
    }
}
