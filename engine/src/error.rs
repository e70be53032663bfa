//! Typed errors of the engine. Every path that reads user files or user requests returns these,
//! so the CLI and the web page can say what to fix instead of panicking.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything the engine can refuse, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A required file is absent from a model directory.
    #[error("{dir} has no {what}: expected {expected}")]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// What is missing, in words.
        what: String,
        /// The file name(s) looked for.
        expected: String,
    },
    /// `config.json` is not valid JSON or not a GPT-2 configuration pmedit supports.
    #[error("invalid model config {path}: {reason}")]
    Config {
        /// The config file (or `<memory>`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A safetensors file is malformed (bad header, truncated, overlapping or out-of-range data).
    #[error("invalid safetensors file {path}: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor the model needs is absent from the weights.
    #[error("tensor `{name}` is missing from the weights in {path}")]
    MissingTensor {
        /// The tensor name (without prefix).
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A tensor has a shape that does not fit the config.
    #[error("tensor `{name}` has shape {found:?} but the config needs {expected:?}")]
    ShapeMismatch {
        /// The tensor name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in a dtype pmedit does not read.
    #[error("tensor `{name}` has dtype {dtype}, pmedit reads F32, F16 and BF16")]
    UnsupportedDtype {
        /// The tensor name.
        name: String,
        /// The dtype as written in the header.
        dtype: String,
    },
    /// Tokenizer files are missing or malformed.
    #[error("tokenizer error ({path}): {reason}")]
    Tokenizer {
        /// The tokenizer file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An edit request is malformed; the message names the request and the field.
    #[error("invalid edit request: {0}")]
    Request(String),
    /// A text corpus is empty, binary or malformed JSON lines.
    #[error("invalid corpus: {0}")]
    Corpus(String),
    /// A dataset record is malformed; the message names the file, the record and the field.
    #[error("invalid dataset: {0}")]
    Dataset(String),
    /// A prompt is empty or longer than the model's context.
    #[error("invalid input: {0}")]
    Input(String),
    /// A computation produced an unusable result (singular system, NaN); the message says which
    /// knob fixes it.
    #[error("numerical problem: {0}")]
    Numerical(String),
    /// The work will not fit in the memory available; the message gives the estimate and the limit.
    #[error("not enough memory: {0}")]
    Resource(String),
    /// The backend failed while running (device lost, out of memory, ...).
    #[error("backend error: {0}")]
    Backend(String),
}

impl EngineError {
    /// A short stable name of the error's kind (`config`, `safetensors`, `request`, …), for
    /// scripts and tests: the CLI prints it as `error[kind]: …`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::MissingFile { .. } => "missing-file",
            Self::Config { .. } => "config",
            Self::Safetensors { .. } => "safetensors",
            Self::MissingTensor { .. } => "missing-tensor",
            Self::ShapeMismatch { .. } => "shape-mismatch",
            Self::UnsupportedDtype { .. } => "unsupported-dtype",
            Self::Tokenizer { .. } => "tokenizer",
            Self::Request(_) => "request",
            Self::Corpus(_) => "corpus",
            Self::Dataset(_) => "dataset",
            Self::Input(_) => "input",
            Self::Numerical(_) => "numerical",
            Self::Resource(_) => "resource",
            Self::Backend(_) => "backend",
        }
    }

    #[cfg(not(target_family = "wasm"))]
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
