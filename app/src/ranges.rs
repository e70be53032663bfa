//! Value parsers that give every numeric flag a range, so a bad number is refused by clap with a
//! message naming the flag (`error[usage]: invalid value '0' for '--batch <BATCH>': …`) before
//! anything is loaded or allocated.

/// The most value-optimisation steps a request may take (the presets use 20–150).
pub const MAX_STEPS: usize = 100_000;

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.trim().parse::<T>().map_err(|_| format!("`{s}` is not a number"))
}

/// A whole number ≥ 1.
pub fn positive(s: &str) -> Result<usize, String> {
    match number::<usize>(s)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// Value-optimisation steps: 1 ..= [`MAX_STEPS`].
pub fn steps(s: &str) -> Result<usize, String> {
    match positive(s)? {
        n if n > MAX_STEPS => Err(format!("must be at most {MAX_STEPS}")),
        n => Ok(n),
    }
}

/// A finite number > 0.
pub fn positive_real(s: &str) -> Result<f64, String> {
    match number::<f64>(s)? {
        x if x.is_finite() && x > 0.0 => Ok(x),
        x => Err(format!("must be a finite number above 0, not {x}")),
    }
}

/// A finite number ≥ 0.
pub fn non_negative_real(s: &str) -> Result<f64, String> {
    match number::<f64>(s)? {
        x if x.is_finite() && x >= 0.0 => Ok(x),
        x => Err(format!("must be a finite number ≥ 0, not {x}")),
    }
}

/// A finite f32 > 0 (sampling temperature).
pub fn positive_real_f32(s: &str) -> Result<f32, String> {
    positive_real(s).and_then(|x| {
        let y = x as f32;
        if y.is_finite() && y > 0.0 {
            Ok(y)
        } else {
            Err(format!("must be a finite number above 0 in f32, not {x}"))
        }
    })
}

/// A number in [0, 1).
pub fn fraction(s: &str) -> Result<f64, String> {
    match non_negative_real(s)? {
        x if x < 1.0 => Ok(x),
        x => Err(format!("must be below 1, not {x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err());
        assert!(steps("18446744073709551615").is_err());
        assert!(steps("18446744073709551616").is_err());
        assert_eq!(steps("20"), Ok(20));
        assert!(positive_real("0").is_err());
        assert!(positive_real("-1").is_err());
        assert!(positive_real("NaN").is_err());
        assert!(positive_real("inf").is_err());
        assert_eq!(non_negative_real("0"), Ok(0.0));
        assert!(non_negative_real("-0.5").is_err());
        assert!(non_negative_real("nan").is_err());
        assert!(positive_real_f32("1e39").is_err());
        assert!(fraction("1").is_err());
    }
}
