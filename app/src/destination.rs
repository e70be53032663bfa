//! Where pmedit writes, and the rules that keep everything else safe.
//!
//! Every command that writes (`edit`, `eval`, `stats`, `merge-stats`, `import-stats`,
//! `train-demo`, `--save-delta`) goes through a [`Destination`]:
//! - an output never equals, contains or lies inside one of the command's inputs (model,
//!   statistics, requests, templates, corpus, dataset), so no input is replaced or deleted;
//! - an existing output is replaced only when pmedit wrote it: a directory that is empty or
//!   holds the kind's marker file (`pmedit-edit.json`, `train.json`, `pmedit-eval.json`), a file
//!   whose safetensors metadata names pmedit's format (`pmedit-stats-1`, `pmedit-delta-1`);
//! - outputs are written beside their final path and renamed into place; a directory that
//!   already exists is swapped with the new one in one step (`renameat2(RENAME_EXCHANGE)` on
//!   Linux), so `--out` is never missing, even after a kill; parent directories are fsynced;
//! - leftovers of killed runs (`.NAME.partial-PID`, `.NAME.old-PID`) are removed only once their
//!   process is gone.
//!
//! Hand-written rather than taken from a crate: `tempfile` gives the sibling temp file (used
//! below) but no exchange-rename or ownership rules, which are the point here.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What a destination holds; decides which existing outputs count as pmedit's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `pmedit edit --out`: an edited model directory.
    EditedModel,
    /// `pmedit train-demo --out`: a trained demo model directory.
    DemoModel,
    /// `pmedit eval --out`: an experiment directory (resumable, written in place).
    Eval,
    /// A statistics file (`stats`, `merge-stats`, `import-stats`).
    Stats,
    /// `--save-delta`: per-layer Δ as safetensors.
    Delta,
    /// `pmedit random-model --out`: a randomly initialised model directory.
    RandomModel,
}

impl Kind {
    fn is_dir(self) -> bool {
        matches!(
            self,
            Kind::EditedModel | Kind::DemoModel | Kind::Eval | Kind::RandomModel
        )
    }

    /// The file a directory of this kind holds once pmedit has written it.
    pub fn marker(self) -> &'static str {
        match self {
            Kind::EditedModel => "pmedit-edit.json",
            Kind::DemoModel => "train.json",
            Kind::Eval => "pmedit-eval.json",
            Kind::Stats => "pmedit-stats-1",
            Kind::Delta => "pmedit-delta-1",
            Kind::RandomModel => "pmedit-random-model.json",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::EditedModel => "an edited model written by `pmedit edit`",
            Kind::DemoModel => "a model written by `pmedit train-demo`",
            Kind::Eval => "an experiment written by `pmedit eval`",
            Kind::Stats => "a pmedit statistics file",
            Kind::Delta => "a delta written by `pmedit edit --save-delta`",
            Kind::RandomModel => "a model written by `pmedit random-model`",
        }
    }
}

/// A checked output path: see the module doc for the rules.
#[derive(Debug)]
pub struct Destination {
    path: PathBuf,
    kind: Kind,
}

/// `path` made absolute without requiring it to exist: the longest existing ancestor is
/// canonicalised (links resolved) and the rest appended.
fn resolve(path: &Path) -> Result<PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Ok(out);
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(Component::Normal(name))) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => bail!("{}: cannot resolve this path", path.display()),
        }
    }
}

/// The directory a path's file or directory is created in.
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The metadata `format` of a safetensors file, if it is one (its header read and validated by
/// the engine's reader; no tensor is read).
fn safetensors_format(path: &Path) -> Option<String> {
    use pmedit_engine::load::{FileSource, SafetensorsFile};
    let file = SafetensorsFile::open(FileSource::open(path).ok()?).ok()?;
    file.metadata().get("format").cloned()
}

/// Whether the process with this id still runs (only Linux can tell: elsewhere, assume it does).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Fsyncs a directory so the renames in it survive a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Swaps two existing paths in one step where the OS can; reports whether it did.
fn exchange(a: &Path, b: &Path) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::ffi::OsStrExt;
        let (Ok(ca), Ok(cb)) = (
            std::ffi::CString::new(a.as_os_str().as_bytes()),
            std::ffi::CString::new(b.as_os_str().as_bytes()),
        ) else {
            return false;
        };
        // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them like rename(2).
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        rc == 0
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (a, b);
        false
    }
}

impl Destination {
    /// Checks `out` against the rules for `kind`, given the command's `inputs` (paths that do not
    /// exist are ignored). `overwrite` is what lets an existing edited model be replaced; the
    /// other kinds replace (or, for `eval`, resume) their own outputs without it.
    pub fn new(out: &Path, inputs: &[&Path], kind: Kind, overwrite: bool) -> Result<Self> {
        let target = resolve(out)?;
        for input in inputs {
            let Ok(input) = input.canonicalize() else { continue };
            let clash = if target == input {
                Some("is")
            } else if kind.is_dir() && input.starts_with(&target) {
                Some("contains")
            } else if kind.is_dir() && target.starts_with(&input) {
                Some("lies inside")
            } else {
                None
            };
            if let Some(how) = clash {
                bail!(
                    "--out {} {how} the input {}: pmedit never writes over its inputs; choose another --out",
                    out.display(),
                    input.display()
                );
            }
        }
        if out.exists() {
            let owned = if kind.is_dir() {
                anyhow::ensure!(out.is_dir(), "--out {} exists and is not a directory", out.display());
                let empty = std::fs::read_dir(out)
                    .with_context(|| format!("reading {}", out.display()))?
                    .next()
                    .is_none();
                empty || out.join(kind.marker()).is_file()
            } else {
                anyhow::ensure!(out.is_file(), "--out {} exists and is not a file", out.display());
                safetensors_format(out).as_deref() == Some(kind.marker())
            };
            if !owned {
                bail!(
                    "--out {} exists and is not {} (no {}): pmedit replaces only what it wrote; choose another --out",
                    out.display(),
                    kind.what(),
                    kind.marker()
                );
            }
            if matches!(kind, Kind::EditedModel | Kind::DemoModel | Kind::RandomModel) && !overwrite {
                bail!("{} already exists (pass --overwrite to replace it)", out.display());
            }
        }
        Ok(Self {
            path: out.to_path_buf(),
            kind,
        })
    }

    /// The file name used for siblings (`.NAME.partial-PID`).
    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into())
    }

    /// Removes `.NAME.partial-PID` / `.NAME.old-PID` siblings whose process is gone.
    fn sweep_leftovers(&self) {
        sweep(&parent_of(&self.path), &self.name(), &[".partial-", ".old-"]);
    }

    /// Writes a file destination: a sibling temp file, fsynced, renamed into place.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        debug_assert!(!self.kind.is_dir());
        write_file_atomic(&self.path, bytes)
    }

    /// Writes a directory destination: `fill` writes the complete contents into a fresh sibling,
    /// which then takes `--out`'s place (swapped in one step when `--out` exists); the previous
    /// output is removed only after that.
    pub fn write_dir(&self, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        debug_assert!(self.kind.is_dir());
        let parent = parent_of(&self.path);
        std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        self.sweep_leftovers();
        let pid = std::process::id();
        let tmp = parent.join(format!(".{}.partial-{pid}", self.name()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        }
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        if let Err(e) = fill(&tmp).and_then(|()| sync_files(&tmp)) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // Fault injection for the interruption tests: hold the complete new directory here.
        if let Some(ms) = std::env::var("PMEDIT_FAULT_PAUSE_BEFORE_RENAME_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if self.path.exists() {
            if exchange(&tmp, &self.path) {
                // `tmp` now holds the previous output.
                sync_dir(&parent)?;
                std::fs::remove_dir_all(&tmp).with_context(|| format!("removing the previous {}", tmp.display()))?;
            } else {
                let old = parent.join(format!(".{}.old-{pid}", self.name()));
                std::fs::rename(&self.path, &old).with_context(|| format!("moving {} aside", self.path.display()))?;
                std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming into {}", self.path.display()))?;
                sync_dir(&parent)?;
                std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
            }
        } else {
            std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming into {}", self.path.display()))?;
        }
        sync_dir(&parent)
    }

    /// A private working directory beside `out` (`.NAME.TAG-PID`), removed when dropped; its
    /// leftovers from killed runs are swept like the others.
    pub fn scratch_dir(out: &Path, tag: &str) -> Result<ScratchDir> {
        let parent = parent_of(out);
        std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        sweep(&parent, &name, &[&format!(".{tag}-")]);
        let path = parent.join(format!(".{name}.{tag}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    /// For a directory written in place (`eval`): creates it.
    pub fn create_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.path).with_context(|| format!("creating {}", self.path.display()))
    }
}

/// Removes the siblings `.NAME{tag}PID` in `parent` whose process is gone.
fn sweep(parent: &Path, name: &str, tags: &[&str]) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let pid = tags.iter().find_map(|tag| {
            file.strip_prefix(&format!(".{name}{tag}"))
                .and_then(|p| p.parse::<u32>().ok())
        });
        if let Some(pid) = pid
            && pid != std::process::id()
            && !process_alive(pid)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A working directory that pmedit made and removes when done with it.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Fsyncs every file directly in `dir`, and `dir` itself.
fn sync_files(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", path.display()))?;
        }
    }
    sync_dir(dir)
}

/// Atomically replaces `path` with `bytes`: a temp file beside it, fsynced, renamed, the
/// directory fsynced.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_of(path);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A temp file is private (0600) by default; the output should get the permissions any new
    // file gets (0666 less the umask), like `std::fs::write`'s.
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    sync_dir(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn outputs_never_touch_inputs() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join("models/gpt2");
        touch(&model.join("config.json"));
        let models = root.path().join("models");
        for (out, how) in [(&models, "contains"), (&model, "is")] {
            let err = Destination::new(out, &[&model], Kind::EditedModel, true)
                .unwrap_err()
                .to_string();
            assert!(err.contains(how), "{err}");
        }
        let inside = model.join("edited");
        let err = Destination::new(&inside, &[&model], Kind::EditedModel, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lies inside"), "{err}");
        // A file output must not be an input file, even one pmedit could have written.
        let weights = model.join("model.safetensors");
        touch(&weights);
        let err = Destination::new(&weights, &[&model, &weights], Kind::Stats, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is the input"), "{err}");
        // …and an existing file that is not pmedit's own is never replaced.
        let err = Destination::new(&weights, &[&model], Kind::Stats, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a pmedit statistics file"), "{err}");
        // A new file next to the model is fine (the default `<model>/stats.safetensors`).
        Destination::new(&model.join("stats.safetensors"), &[&model], Kind::Stats, false).unwrap();
    }

    #[test]
    fn only_pmedit_directories_are_replaced() {
        let root = tempfile::tempdir().unwrap();
        let theirs = root.path().join("theirs");
        touch(&theirs.join("notes.txt"));
        let err = Destination::new(&theirs, &[], Kind::EditedModel, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pmedit-edit.json"), "{err}");
        let ours = root.path().join("ours");
        touch(&ours.join("pmedit-edit.json"));
        assert!(
            Destination::new(&ours, &[], Kind::EditedModel, false).is_err(),
            "--overwrite is needed"
        );
        let d = Destination::new(&ours, &[], Kind::EditedModel, true).unwrap();
        d.write_dir(|tmp| {
            std::fs::write(tmp.join("pmedit-edit.json"), b"new")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(std::fs::read(ours.join("pmedit-edit.json")).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no sibling left behind: {names:?}");
        assert!(theirs.join("notes.txt").is_file());
    }

    #[test]
    fn a_failed_fill_leaves_the_old_output() {
        let root = tempfile::tempdir().unwrap();
        let ours = root.path().join("ours");
        touch(&ours.join("pmedit-edit.json"));
        let d = Destination::new(&ours, &[], Kind::EditedModel, true).unwrap();
        assert!(d.write_dir(|_| bail!("no")).is_err());
        assert_eq!(std::fs::read(ours.join("pmedit-edit.json")).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftovers_go_only_when_their_process_is_gone() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        // PID 1 always runs; 4 000 000 000 exceeds any pid_max.
        let alive = root.path().join(".out.partial-1");
        let dead = root.path().join(".out.old-4000000000");
        touch(&alive.join("f"));
        touch(&dead.join("f"));
        let d = Destination::new(&out, &[], Kind::EditedModel, false).unwrap();
        d.write_dir(|tmp| Ok(std::fs::write(tmp.join("pmedit-edit.json"), b"{}")?))
            .unwrap();
        assert!(!dead.exists(), "a dead run's leftover is swept");
        assert_eq!(alive.exists(), cfg!(target_os = "linux"), "a live run's is kept");
    }

    /// Outputs get a new file's usual permissions, not the temp file's private 0600.
    #[cfg(unix)]
    #[test]
    fn outputs_get_ordinary_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (ours, plain) = (dir.path().join("ours"), dir.path().join("plain"));
        write_file_atomic(&ours, b"x").unwrap();
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain));
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_file_atomic(&p, b"first").unwrap();
        write_file_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }
}
