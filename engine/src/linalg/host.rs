//! Small dense f64 routines on the host: the diagonal blocks of the device Cholesky, and the
//! f64 reference the GPU f32 path is checked against.

/// A row-major square or rectangular matrix of f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row-major values.
    pub data: Vec<f64>,
}

impl Mat {
    /// A matrix from row-major values.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix data length");
        Self { rows, cols, data }
    }

    /// The zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self::new(rows, cols, vec![0.0; rows * cols])
    }

    /// The identity.
    pub fn eye(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m[(i, i)] = 1.0;
        }
        m
    }

    /// Transpose.
    pub fn t(&self) -> Self {
        let mut out = Self::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                out[(j, i)] = self[(i, j)];
            }
        }
        out
    }

    /// Matrix product.
    pub fn matmul(&self, other: &Self) -> Self {
        assert_eq!(self.cols, other.rows, "matmul shapes");
        let mut out = Self::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self[(i, k)];
                if a == 0.0 {
                    continue;
                }
                let row = &other.data[k * other.cols..(k + 1) * other.cols];
                let dst = &mut out.data[i * other.cols..(i + 1) * other.cols];
                for (d, b) in dst.iter_mut().zip(row) {
                    *d += a * b;
                }
            }
        }
        out
    }

    /// `self + s·I`.
    pub fn add_diag(mut self, s: f64) -> Self {
        for i in 0..self.rows.min(self.cols) {
            self[(i, i)] += s;
        }
        self
    }

    /// Frobenius norm.
    pub fn norm(&self) -> f64 {
        self.data.iter().map(|v| v * v).sum::<f64>().sqrt()
    }
}

impl std::ops::Index<(usize, usize)> for Mat {
    type Output = f64;
    fn index(&self, (i, j): (usize, usize)) -> &f64 {
        &self.data[i * self.cols + j]
    }
}

impl std::ops::IndexMut<(usize, usize)> for Mat {
    fn index_mut(&mut self, (i, j): (usize, usize)) -> &mut f64 {
        &mut self.data[i * self.cols + j]
    }
}

/// `Σ aᵢbᵢ` with eight independent partial sums, so the compiler vectorises it (a single running
/// sum is a serial dependency chain in strict floating point).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0.0f64; 8];
    for (x, y) in ca.zip(cb) {
        for t in 0..8 {
            acc[t] += x[t] * y[t];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Lower Cholesky factor of an SPD matrix; `Err((i, pivot))` when pivot `i` is not positive.
///
/// Row-oriented: `L[i, j] = (A[i, j] − L[i, :j]·L[j, :j]) / L[j, j]`, a dot product of two
/// contiguous rows.
pub fn cholesky(a: &Mat) -> Result<Mat, (usize, f64)> {
    let n = a.rows;
    let mut l = Mat::zeros(n, n);
    for i in 0..n {
        for j in 0..=i {
            let s = a[(i, j)] - dot(&l.data[i * n..i * n + j], &l.data[j * n..j * n + j]);
            if i == j {
                if !s.is_finite() || s <= 0.0 {
                    return Err((i, s));
                }
                l[(i, i)] = s.sqrt();
            } else {
                l[(i, j)] = s / l[(j, j)];
            }
        }
    }
    Ok(l)
}

/// Inverse of a lower-triangular matrix with a positive diagonal.
///
/// Row by row from `L X = I`: `X[i, :] = (eᵢ − Σ_{k<i} L[i, k] X[k, :]) / L[i, i]`, where row `k`
/// of `X` is non-zero only in its first `k + 1` entries, so every update is a contiguous axpy.
pub fn invert_lower(l: &Mat) -> Mat {
    let n = l.rows;
    let mut inv = Mat::zeros(n, n);
    let mut row = vec![0.0f64; n];
    for i in 0..n {
        row.fill(0.0);
        row[i] = 1.0;
        for k in 0..i {
            let a = l[(i, k)];
            if a == 0.0 {
                continue;
            }
            for (r, x) in row[..=k].iter_mut().zip(&inv.data[k * n..k * n + k + 1]) {
                *r -= a * x;
            }
        }
        let d = l[(i, i)];
        for (dst, r) in inv.data[i * n..i * n + i + 1].iter_mut().zip(&row[..=i]) {
            *dst = r / d;
        }
    }
    inv
}

/// Solves `A X = B` for SPD `A` by Cholesky; `Err((i, pivot))` when `A` is not positive definite.
pub fn spd_solve(a: &Mat, b: &Mat) -> Result<Mat, (usize, f64)> {
    let l = cholesky(a)?;
    let n = a.rows;
    let mut x = b.clone();
    for c in 0..b.cols {
        for i in 0..n {
            let mut s = x[(i, c)];
            for k in 0..i {
                s -= l[(i, k)] * x[(k, c)];
            }
            x[(i, c)] = s / l[(i, i)];
        }
        for i in (0..n).rev() {
            let mut s = x[(i, c)];
            for k in i + 1..n {
                s -= l[(k, i)] * x[(k, c)];
            }
            x[(i, c)] = s / l[(i, i)];
        }
    }
    Ok(x)
}
