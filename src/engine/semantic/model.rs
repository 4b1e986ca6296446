//! The sentence-embedding model: a WordPiece tokenizer (`tokenizers`) and a BERT-style
//! ONNX encoder run by ONNX Runtime (`ort`, loaded at run time from `ORT_DYLIB_PATH`).
//!
//! A text becomes at most [`MAX_TOKENS`] tokens (`[CLS] … [SEP]`, longer texts
//! truncated) and is run on its own (no padding, so every token is attended); the
//! encoder's `last_hidden_state` `[1, tokens, dimension]` is mean-pooled and
//! L2-normalised, as sentence-transformers does for all-MiniLM-L6-v2.
//!
//! A [`Model`] is shared; each thread that embeds holds its own [`Encoder`] (an ONNX
//! session on one intra-op thread, so the work runs on the calling thread and at its
//! priority).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

/// Most tokens per text, `[CLS]` and `[SEP]` included.
pub const MAX_TOKENS: usize = 256;

/// Where the model comes from (`--embed-model`, `--embed-tokenizer`, `ORT_DYLIB_PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// The encoder, an `.onnx` file.
    pub model: PathBuf,
    /// Its tokenizer, a Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// The ONNX Runtime shared library (`libonnxruntime.so`); `None`: `ORT_DYLIB_PATH`,
    /// else the system's library search path.
    pub runtime: Option<PathBuf>,
}

/// What a collection records about the model that filled it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// A readable name: the `.onnx` file's stem, or its folder's name when the stem is
    /// the generic `model`.
    pub name: String,
    /// Vector dimension.
    pub dimension: usize,
    /// First 16 hex digits of BLAKE3 of the `.onnx` bytes.
    pub fingerprint: String,
}

/// Model failures. Messages name the flag or variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configured file is missing or unreadable.
    #[error("{what} {}: {reason}", path.display())]
    File {
        /// Which file, with the flag that names it.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// ONNX Runtime could not be loaded or failed.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// The tokenizer failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The `.onnx` file is not a sentence encoder this engine can run.
    #[error("model {}: {reason}", path.display())]
    Unsupported {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

const MODEL_FLAG: &str = "embedding model (--embed-model / QUARRY_EMBED_MODEL)";
const TOKENIZER_FLAG: &str = "tokenizer (--embed-tokenizer / QUARRY_EMBED_TOKENIZER)";

/// The process's ONNX Runtime, loaded once (a process holds one runtime library).
static RUNTIME: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

fn runtime(path: Option<&Path>) -> Result<&'static ort::environment::Environment, ModelError> {
    let wanted = path
        .map(Path::to_owned)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"));
    let loaded = RUNTIME.get_or_init(|| {
        if wanted.components().count() > 1 && !wanted.is_file() {
            return Err(format!(
                "no ONNX Runtime library at {} (set ORT_DYLIB_PATH to libonnxruntime.so, e.g. from the PyPI package onnxruntime: site-packages/onnxruntime/capi/)",
                wanted.display()
            ));
        }
        let env = ort::environment::init_from(&wanted)
            .map_err(|e| {
                format!(
                    "cannot load {} ({e}); set ORT_DYLIB_PATH to libonnxruntime.so (the PyPI package onnxruntime ships it in site-packages/onnxruntime/capi/)",
                    wanted.display()
                )
            })?
            .with_name("quarry")
            .build()
            .map_err(|e| format!("cannot start {}: {e}", wanted.display()))?;
        Ok((wanted.clone(), env))
    });
    match loaded {
        Ok((_, env)) => Ok(env),
        Err(e) => Err(ModelError::Runtime(e.clone())),
    }
}

fn check_file(what: &'static str, path: &Path) -> Result<(), ModelError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(ModelError::File {
            what,
            path: path.to_owned(),
            reason: "not a file".into(),
        }),
        Err(e) => Err(ModelError::File {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// A loaded model: tokenizer, runtime and what it is.
pub struct Model {
    info: ModelInfo,
    path: PathBuf,
    tokenizer: tokenizers::Tokenizer,
    env: &'static ort::environment::Environment,
    /// Whether the encoder takes `token_type_ids`.
    token_types: bool,
    /// The encoder that embeds queries (foreground work, never shared with the
    /// background embedder).
    query: Mutex<Encoder>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("info", &self.info).finish()
    }
}

impl Model {
    /// Loads and checks the model: the files exist, the runtime loads, the encoder has
    /// `input_ids` and `attention_mask` inputs and one `[batch, tokens, dim]` output
    /// (checked by embedding a probe text).
    ///
    /// Errors: [`ModelError`] naming the file or variable to fix.
    pub fn load(config: &ModelConfig) -> Result<Model, ModelError> {
        limit_malloc_arenas();
        check_file(MODEL_FLAG, &config.model)?;
        check_file(TOKENIZER_FLAG, &config.tokenizer)?;
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(&config.tokenizer).map_err(|e| ModelError::File {
                what: TOKENIZER_FLAG,
                path: config.tokenizer.clone(),
                reason: format!("not a tokenizer.json: {e}"),
            })?;
        // The file pads every text to a fixed length; this engine runs each text alone.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let bytes = std::fs::read(&config.model).map_err(|e| ModelError::File {
            what: MODEL_FLAG,
            path: config.model.clone(),
            reason: e.to_string(),
        })?;
        let fingerprint = blake3::hash(&bytes).to_hex()[..16].to_owned();
        drop(bytes);
        let env = runtime(config.runtime.as_deref())?;
        let session = new_session(env, &config.model)?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !names.contains(&required) {
                return Err(ModelError::Unsupported {
                    path: config.model.clone(),
                    reason: format!(
                        "no input named {required} (inputs: {names:?}); expected a BERT-style sentence encoder such as all-MiniLM-L6-v2"
                    ),
                });
            }
        }
        let token_types = names.contains(&"token_type_ids");
        let stem = config
            .model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = if stem == "model" {
            config
                .model
                .parent()
                .and_then(Path::file_name)
                .map_or(stem, |s| s.to_string_lossy().into_owned())
        } else {
            stem
        };
        let mut model = Model {
            info: ModelInfo {
                name,
                dimension: 0,
                fingerprint,
            },
            path: config.model.clone(),
            tokenizer,
            env,
            token_types,
            query: Mutex::new(Encoder { session }),
        };
        let probe = model
            .embed_query("probe")
            .map_err(|e| ModelError::Unsupported {
                path: config.model.clone(),
                reason: format!("it does not run as a sentence encoder: {e}"),
            })?;
        model.info.dimension = probe.len();
        Ok(model)
    }

    /// What the model is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// A new encoder, for one thread's use.
    pub fn encoder(&self) -> Result<Encoder, ModelError> {
        Ok(Encoder {
            session: new_session(self.env, &self.path)?,
        })
    }

    /// Embeds one query text with the foreground encoder.
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>, ModelError> {
        let mut encoder = self.query.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = self.embed(&mut encoder, &[text])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Embeds `texts` with `encoder`: one unit vector per text, in order.
    ///
    /// Each text is its own ONNX run (a batch of one): measured on this model with one
    /// intra-op thread, that is the fastest (no padding: 16.8 chunks per CPU-second
    /// against 9.5 for padded batches of 8) and by far the smallest in memory (attention
    /// grows with batch × tokens²).
    ///
    /// Errors: the tokenizer or the runtime failed.
    pub fn embed(
        &self,
        encoder: &mut Encoder,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        texts.iter().map(|t| self.embed_one(encoder, t)).collect()
    }

    fn embed_one(&self, encoder: &mut Encoder, text: &str) -> Result<Vec<f32>, ModelError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let ids: Vec<i64> = encoding.get_ids().iter().map(|&i| i64::from(i)).collect();
        let len = ids.len();
        if len == 0 {
            return Err(ModelError::Tokenizer(format!("no tokens in {text:?}")));
        }
        let mask = vec![1i64; len];
        let types = vec![0i64; len];
        let shape = [1, len];
        let runtime = |e: ort::Error| ModelError::Runtime(e.to_string());
        let mut inputs = vec![
            (
                "input_ids",
                ort::session::SessionInputValue::from(
                    TensorRef::from_array_view((shape, ids.as_slice())).map_err(runtime)?,
                ),
            ),
            (
                "attention_mask",
                TensorRef::from_array_view((shape, mask.as_slice()))
                    .map_err(runtime)?
                    .into(),
            ),
        ];
        if self.token_types {
            inputs.push((
                "token_type_ids",
                TensorRef::from_array_view((shape, types.as_slice()))
                    .map_err(runtime)?
                    .into(),
            ));
        }
        let outputs = encoder.session.run(inputs).map_err(runtime)?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(runtime)?;
        if out_shape.len() != 3 || out_shape[0] != 1 || out_shape[1] as usize != len {
            return Err(ModelError::Runtime(format!(
                "expected an output of shape [1, {len}, dimension], got {out_shape:?}"
            )));
        }
        let dim = out_shape[2] as usize;
        // Mean over the tokens (all attended: no padding), then unit length.
        let mut v = vec![0f32; dim];
        for row in data.chunks_exact(dim) {
            for (acc, x) in v.iter_mut().zip(row) {
                *acc += x;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        Ok(v)
    }
}

/// Caps glibc's malloc arenas at two. Each embedding thread would otherwise get its own
/// arena and keep the memory ONNX Runtime frees in it: measured with `quarry serve`
/// embedding 4,150 chunks on two threads, peak RSS 676 → 629 MB and steady 633 →
/// 560 MB (the environment variable `MALLOC_ARENA_MAX=2`, set before start, does a
/// little better: 587 MB peak).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes any positive
    // value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// One ONNX session, used by one thread at a time.
pub struct Encoder {
    session: Session,
}

fn new_session(env: &ort::environment::Environment, path: &Path) -> Result<Session, ModelError> {
    let runtime = |e: String| ModelError::Runtime(e);
    // One intra-op thread: the work runs on the calling thread, at its priority.
    let builder = Session::builder(env).map_err(|e| runtime(e.to_string()))?;
    let builder = builder
        .with_intra_threads(1)
        .map_err(|e| runtime(e.to_string()))?;
    let builder = builder
        .with_inter_threads(1)
        .map_err(|e| runtime(e.to_string()))?;
    let builder = builder
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| runtime(e.to_string()))?;
    // Shapes vary from text to text: no pre-planned buffers.
    let mut builder = builder
        .with_memory_pattern(false)
        .map_err(|e| runtime(e.to_string()))?;
    builder
        .commit_from_file(path)
        .map_err(|e| ModelError::Unsupported {
            path: path.to_owned(),
            reason: format!("ONNX Runtime cannot load it: {e}"),
        })
}
