//! GPT-2's token embedding, stored in row chunks so no single device buffer exceeds what GPUs
//! bind (WebGPU's default `maxStorageBufferBindingSize` is 128 MiB; GPT-2's f32 `wte` is 154 MB,
//! GPT2-XL's 322 MB). The same table is the tied LM head.

use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;

use super::precision::ACTIVATIONS;

/// Largest chunk, in bytes (f32).
pub const MAX_CHUNK_BYTES: usize = 1 << 26;

/// The chunk limit for tables on `device`: [`MAX_CHUNK_BYTES`] on GPUs; none on the CPU backend,
/// which has no binding limit, so its LM head is one product with no concatenation of the
/// chunks' logits (103 MB for 16 × 32 positions of GPT-2).
pub fn max_chunk_bytes_for(device: &Device) -> usize {
    if *device == Device::flex() {
        usize::MAX
    } else {
        MAX_CHUNK_BYTES
    }
}

/// Configuration of [`TokenEmbedding`].
#[derive(Config, Debug)]
pub struct TokenEmbeddingConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Model width.
    pub d_model: usize,
    /// Largest chunk in bytes (f32).
    #[config(default = "MAX_CHUNK_BYTES")]
    pub max_chunk_bytes: usize,
}

/// `[vocab, d]` embedding table in chunks of rows.
#[derive(Module, Debug)]
pub struct TokenEmbedding {
    /// Consecutive row blocks of the table.
    pub chunks: Vec<Param<Tensor<2>>>,
    /// Rows per chunk (the last may hold fewer).
    pub rows_per_chunk: usize,
}

impl TokenEmbeddingConfig {
    /// Rows per chunk for this width.
    pub fn rows_per_chunk(&self) -> usize {
        (self.max_chunk_bytes / (4 * self.d_model.max(1))).clamp(1, self.vocab.max(1))
    }

    /// Row ranges of the chunks.
    pub fn ranges(&self) -> Vec<std::ops::Range<usize>> {
        let r = self.rows_per_chunk();
        (0..self.vocab)
            .step_by(r)
            .map(|lo| lo..(lo + r).min(self.vocab))
            .collect()
    }

    /// A lazily initialised table (N(0, 0.02), as transformers) on `device`.
    pub fn init(&self, device: &Device) -> TokenEmbedding {
        let init = Initializer::Normal { mean: 0.0, std: 0.02 };
        TokenEmbedding {
            chunks: self
                .ranges()
                .into_iter()
                .map(|r| init.init_with([r.len(), self.d_model], None, None, device))
                .collect(),
            rows_per_chunk: self.rows_per_chunk(),
        }
    }

    /// Builds the table from row-major host values `[vocab, d]`, one chunk at a time.
    pub fn from_values(&self, values: &[f32], device: &Device) -> TokenEmbedding {
        let d = self.d_model;
        self.from_chunks(|r| {
            Ok::<_, std::convert::Infallible>(Tensor::from_data(
                TensorData::new(values[r.start * d..r.end * d].to_vec(), [r.len(), d]),
                device,
            ))
        })
        .unwrap_or_else(|never| match never {})
    }

    /// Builds the table from `chunk(rows)`, the `[rows.len(), d]` block of each chunk's rows, asked
    /// for one chunk at a time (a loader reads each from its file, so the whole table is never in
    /// host memory at once).
    pub fn from_chunks<E>(
        &self,
        mut chunk: impl FnMut(std::ops::Range<usize>) -> Result<Tensor<2>, E>,
    ) -> Result<TokenEmbedding, E> {
        Ok(TokenEmbedding {
            chunks: self
                .ranges()
                .into_iter()
                .map(|r| chunk(r).map(Param::from_tensor))
                .collect::<Result<_, E>>()?,
            rows_per_chunk: self.rows_per_chunk(),
        })
    }
}

impl TokenEmbedding {
    /// Vocabulary size.
    pub fn vocab(&self) -> usize {
        self.chunks.iter().map(|c| c.dims()[0]).sum()
    }

    /// Width.
    pub fn d_model(&self) -> usize {
        self.chunks[0].dims()[1]
    }

    /// The device of the table.
    pub fn device(&self) -> Device {
        self.chunks[0].device()
    }

    /// Embeddings of `ids` (`[batch, seq]`) → `[batch, seq, d]`, in the activations' dtype
    /// whatever the table is stored in.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, s] = ids.dims();
        let d = self.d_model();
        let flat = ids.reshape([b * s]);
        if self.chunks.len() == 1 {
            return self.chunks[0]
                .val()
                .select(0, flat)
                .cast(ACTIVATIONS)
                .reshape([b, s, d]);
        }
        let mut out: Option<Tensor<2>> = None;
        let mut lo = 0i64;
        for chunk in &self.chunks {
            let rows = chunk.dims()[0] as i64;
            let local = flat.clone().sub_scalar(lo);
            let inside = local
                .clone()
                .greater_equal_elem(0)
                .bool_and(local.clone().lower_elem(rows));
            let picked = chunk.val().select(0, local.clamp(0, rows - 1)).cast(ACTIVATIONS);
            let part = picked * inside.float().unsqueeze_dim::<2>(1);
            out = Some(match out {
                Some(acc) => acc + part,
                None => part,
            });
            lo += rows;
        }
        out.expect("at least one chunk").reshape([b, s, d])
    }

    /// The tied LM head: `h · tableᵀ`, `[batch, seq, d] → [batch, seq, vocab]`; the logits come
    /// back in `h`'s dtype whatever the table is stored in ([`crate::linalg::matmul`]).
    pub fn logits(&self, h: Tensor<3>) -> Tensor<3> {
        let [b, s, d] = h.dims();
        let h = h.reshape([b * s, d]);
        let parts: Vec<Tensor<2>> = self
            .chunks
            .iter()
            .map(|c| crate::linalg::matmul(h.clone(), c.val().transpose()))
            .collect();
        Tensor::cat(parts, 1).reshape([b, s, self.vocab()])
    }

    /// The first `n` rows (for fingerprints).
    pub fn head_rows(&self, n: usize) -> Tensor<2> {
        self.chunks[0].val().narrow(0, 0, n.min(self.chunks[0].dims()[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three chunks of 4, 4 and 2 rows behave exactly like one table.
    #[test]
    fn chunked_table_equals_single_table() {
        let device = Device::flex();
        let (v, d) = (10, 3);
        let values: Vec<f32> = (0..v * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let single = TokenEmbeddingConfig::new(v, d).from_values(&values, &device);
        let chunked = TokenEmbeddingConfig::new(v, d)
            .with_max_chunk_bytes(4 * d * 4)
            .from_values(&values, &device);
        assert_eq!(single.chunks.len(), 1);
        assert_eq!(chunked.chunks.len(), 3);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 3, 4, 9, 7, 5], [2, 3]), &device);
        let a: Vec<f32> = single.forward(ids.clone()).into_data().iter().collect();
        let b: Vec<f32> = chunked.forward(ids).into_data().iter().collect();
        assert_eq!(a, b);
        let h = Tensor::<3>::from_data(
            TensorData::new(vec![0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75], [1, 2, 3]),
            &device,
        );
        let a: Vec<f32> = single.logits(h.clone()).into_data().iter().collect();
        let b: Vec<f32> = chunked.logits(h).into_data().iter().collect();
        assert_eq!(a.len(), 20);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6);
        }
    }
}
