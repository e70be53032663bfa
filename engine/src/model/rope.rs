//! Rotary position embeddings (RoPE): each pair of a head's dimensions is rotated by an angle
//! proportional to the token's position, `x' = x·cos(p·θᵢ) + rot(x)·sin(p·θᵢ)`.
//!
//! Two pairings are in use: Llama pairs dimension i with i + d/2 (transformers' `rotate_half`),
//! GPT-J pairs 2i with 2i + 1 and rotates only the first `rotary_dim` dimensions.

use burn::prelude::*;

/// How a head's dimensions are paired for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pairing {
    /// `(i, i + d/2)`: Llama, Mistral, Qwen2.
    Halves,
    /// `(2i, 2i + 1)`: GPT-J.
    Interleaved,
}

/// The cosines and sines of positions `past..past + seq` for inverse frequencies `inv_freq`
/// (`[seq, inv_freq.len()]` each), computed in f64 on the host and uploaded in f32.
pub fn angles(inv_freq: &[f64], past: usize, seq: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let half = inv_freq.len();
    let (mut cos, mut sin) = (Vec::with_capacity(seq * half), Vec::with_capacity(seq * half));
    for p in past..past + seq {
        for &f in inv_freq {
            // transformers multiplies in f32; so does this, so long positions round alike.
            let a = (p as f32 * f as f32) as f64;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    let t = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [seq, half]), device);
    (t(cos), t(sin))
}

/// Rotates `x` (`[batch, heads, seq, d_head]`) by `cos`/`sin` (`[seq, r/2]`, where `r` ≤ d_head
/// is the number of rotated dimensions; the rest pass through).
pub fn apply(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>, pairing: Pairing) -> Tensor<4> {
    let [b, h, s, dh] = x.dims();
    let half = cos.dims()[1];
    let rotated = 2 * half;
    let c = cos.clone().reshape([1, 1, s, half]);
    let sn = sin.clone().reshape([1, 1, s, half]);
    let (head, tail) = if rotated < dh {
        (
            x.clone().narrow(3, 0, rotated),
            Some(x.narrow(3, rotated, dh - rotated)),
        )
    } else {
        (x, None)
    };
    let out = match pairing {
        Pairing::Halves => {
            let x1 = head.clone().narrow(3, 0, half);
            let x2 = head.narrow(3, half, half);
            let y1 = x1.clone() * c.clone() - x2.clone() * sn.clone();
            let y2 = x2 * c + x1 * sn;
            Tensor::cat(vec![y1, y2], 3)
        }
        Pairing::Interleaved => {
            let pairs = head.reshape([b, h, s, half, 2]);
            let x1 = pairs.clone().narrow(4, 0, 1).reshape([b, h, s, half]);
            let x2 = pairs.narrow(4, 1, 1).reshape([b, h, s, half]);
            let y1 = x1.clone() * c.clone() - x2.clone() * sn.clone();
            let y2 = x2 * c + x1 * sn;
            Tensor::stack::<5>(vec![y1, y2], 4).reshape([b, h, s, rotated])
        }
    };
    match tail {
        Some(t) => Tensor::cat(vec![out, t], 3),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Position 0 is the identity; a rotation keeps each pair's norm; the two pairings rotate
    /// the pairs they name by the same angle.
    #[test]
    fn rotation_pairs_and_norms() {
        let device = Device::flex();
        let inv = [1.0, 0.1];
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 1, 4]), &device);
        let (c, s) = angles(&inv, 0, 1, &device);
        let same: Vec<f32> = apply(x.clone(), &c, &s, Pairing::Halves).into_data().iter().collect();
        assert_eq!(same, vec![1.0, 2.0, 3.0, 4.0]);
        let (c, s) = angles(&inv, 3, 1, &device);
        let h: Vec<f32> = apply(x.clone(), &c, &s, Pairing::Halves).into_data().iter().collect();
        // Halves: pairs (x0, x2) = (1, 3) at angle 3, (x1, x3) = (2, 4) at angle 0.3.
        let (a, b) = (3.0f32, 0.3f32);
        let want = [
            a.cos() - 3.0 * a.sin(),
            2.0 * b.cos() - 4.0 * b.sin(),
            3.0 * a.cos() + a.sin(),
            4.0 * b.cos() + 2.0 * b.sin(),
        ];
        for (g, w) in h.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{h:?} vs {want:?}");
        }
        let i: Vec<f32> = apply(x, &c, &s, Pairing::Interleaved).into_data().iter().collect();
        // Interleaved: pairs (1, 2) at angle 3, (3, 4) at angle 0.3.
        let want = [
            a.cos() - 2.0 * a.sin(),
            2.0 * a.cos() + a.sin(),
            3.0 * b.cos() - 4.0 * b.sin(),
            4.0 * b.cos() + 3.0 * b.sin(),
        ];
        for (g, w) in i.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{i:?} vs {want:?}");
        }
    }
}
