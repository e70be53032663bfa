//! Which part of a corpus one statistics run processes: `--shard I/N`, or `--shard auto`, which
//! reads the shard from the cluster scheduler that started the process.
//!
//! C0 is a sum over the corpus (docs/MATH.md §8), so it splits into shards whose sums
//! `pmedit merge-stats` adds. Schedulers number their workers in their own ways:
//! - **Slurm job arrays** (`sbatch --array=1-8`, `--array=0-15:2`) set `SLURM_ARRAY_TASK_ID`,
//!   `SLURM_ARRAY_TASK_COUNT`, `SLURM_ARRAY_TASK_MIN` and `SLURM_ARRAY_TASK_STEP`; the shard is the
//!   task's position in the array, `(ID − MIN) / STEP`, of `COUNT`.
//! - **Kubernetes Indexed Jobs** set `JOB_COMPLETION_INDEX` (0 … completions − 1) and nothing
//!   with the number of completions, so `--shards N` must give it.

use anyhow::{Context, Result, bail, ensure};

/// One shard of a corpus split `count` ways: windows `w` with `w mod count = index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole corpus.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// `--out` with `{shard}` replaced by this shard's index (so that every worker of an array
    /// job, started with the same command line, writes its own file).
    pub fn output_path(&self, out: &std::path::Path) -> std::path::PathBuf {
        let text = out.to_string_lossy();
        if text.contains("{shard}") {
            text.replace("{shard}", &self.index.to_string()).into()
        } else {
            out.to_path_buf()
        }
    }
}

/// Resolves `--shard` (`I/N` or `auto`) and `--shards`, reading the scheduler's variables
/// through `var` (the process environment in the CLI, a table in tests).
pub fn resolve(spec: Option<&str>, shards: Option<usize>, var: impl Fn(&str) -> Option<String>) -> Result<Shard> {
    match spec.map(str::trim) {
        None => {
            ensure!(shards.is_none(), "--shards needs --shard auto");
            Ok(Shard::WHOLE)
        }
        Some("auto") => from_scheduler(shards, var),
        Some(text) => {
            ensure!(
                shards.is_none(),
                "--shards goes with --shard auto; `--shard {text}` already names N"
            );
            parse(text)
        }
    }
}

/// Parses `I/N`.
pub fn parse(s: &str) -> Result<Shard> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard {s}: expected I/N (e.g. 0/4) or auto"))?;
    let index: usize = i
        .trim()
        .parse()
        .with_context(|| format!("--shard {s}: I is not a number"))?;
    let count: usize = n
        .trim()
        .parse()
        .with_context(|| format!("--shard {s}: N is not a number"))?;
    ensure!(count > 0 && index < count, "--shard {s}: need 0 ≤ I < N");
    Ok(Shard { index, count })
}

fn number(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>> {
    var(name)
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .with_context(|| format!("--shard auto: {name}={v} is not a whole number"))
        })
        .transpose()
}

fn from_scheduler(shards: Option<usize>, var: impl Fn(&str) -> Option<String>) -> Result<Shard> {
    if let Some(id) = number(&var, "SLURM_ARRAY_TASK_ID")? {
        let count = number(&var, "SLURM_ARRAY_TASK_COUNT")?
            .context("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
        let min = number(&var, "SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number(&var, "SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        ensure!(
            id >= min && (id - min) % step == 0 && (id - min) / step < count,
            "--shard auto: Slurm task {id} is not on the range {min}, {}, … of {count} tasks \
             (an --array given as a list rather than a range?); use --shard I/N",
            min + step
        );
        if let Some(n) = shards {
            ensure!(
                n == count,
                "--shards {n} disagrees with the Slurm array's {count} tasks (SLURM_ARRAY_TASK_COUNT)"
            );
        }
        return Ok(Shard {
            index: (id - min) / step,
            count,
        });
    }
    if let Some(index) = number(&var, "JOB_COMPLETION_INDEX")? {
        let count = shards.context(
            "--shard auto: a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) does not say how many \
             completions it has; give them with --shards N (the Job's spec.completions)",
        )?;
        ensure!(count > 0, "--shards must be at least 1");
        ensure!(
            index < count,
            "--shard auto: JOB_COMPLETION_INDEX={index} is not below --shards {count}"
        );
        return Ok(Shard { index, count });
    }
    bail!(
        "--shard auto: no scheduler found: expected a Slurm job array (SLURM_ARRAY_TASK_ID, \
         SLURM_ARRAY_TASK_COUNT) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with --shards N); \
         elsewhere use --shard I/N"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn explicit_shards_parse_and_are_checked() {
        assert_eq!(
            resolve(Some("2/5"), None, env(&[])).unwrap(),
            Shard { index: 2, count: 5 }
        );
        assert_eq!(resolve(None, None, env(&[])).unwrap(), Shard::WHOLE);
        for bad in ["5/5", "1/0", "x/2", "3", "auto/2"] {
            assert!(resolve(Some(bad), None, env(&[])).is_err(), "{bad}");
        }
        assert!(resolve(Some("0/2"), Some(2), env(&[])).is_err());
        assert!(resolve(None, Some(2), env(&[])).is_err());
    }

    #[test]
    fn slurm_arrays_number_from_their_minimum_in_steps() {
        // sbatch --array=1-4
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
        ];
        assert_eq!(
            resolve(Some("auto"), None, env(&slurm)).unwrap(),
            Shard { index: 2, count: 4 }
        );
        assert_eq!(resolve(Some("auto"), Some(4), env(&slurm)).unwrap().index, 2);
        assert!(resolve(Some("auto"), Some(5), env(&slurm)).is_err());
        // sbatch --array=0-14:2 (8 tasks)
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(
            resolve(Some("auto"), None, env(&stepped)).unwrap(),
            Shard { index: 5, count: 8 }
        );
        let off = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert!(resolve(Some("auto"), None, env(&off)).is_err());
        assert!(resolve(Some("auto"), None, env(&[("SLURM_ARRAY_TASK_ID", "1")])).is_err());
    }

    #[test]
    fn kubernetes_indexed_jobs_need_the_count() {
        let k8s = [("JOB_COMPLETION_INDEX", "2")];
        assert_eq!(
            resolve(Some("auto"), Some(3), env(&k8s)).unwrap(),
            Shard { index: 2, count: 3 }
        );
        let err = resolve(Some("auto"), None, env(&k8s)).unwrap_err().to_string();
        assert!(err.contains("--shards"), "{err}");
        assert!(resolve(Some("auto"), Some(2), env(&k8s)).is_err());
        let err = resolve(Some("auto"), None, env(&[])).unwrap_err().to_string();
        assert!(err.contains("no scheduler"), "{err}");
    }

    #[test]
    fn the_output_names_its_shard() {
        let s = Shard { index: 3, count: 8 };
        assert_eq!(
            s.output_path(std::path::Path::new("/v/c0.{shard}.safetensors")),
            std::path::PathBuf::from("/v/c0.3.safetensors")
        );
        assert_eq!(
            s.output_path(std::path::Path::new("c0.st")),
            std::path::PathBuf::from("c0.st")
        );
    }
}
