//! Random-access byte sources for weight files: a file on disk (native), or bytes in memory
//! (tests, the browser after a `File` slice or an HTTP range arrives).

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// Something the loader can read byte ranges from, one tensor at a time.
pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads exactly `len` bytes starting at `offset`.
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// A name for error messages.
    fn name(&self) -> &Path;
}

/// Bytes already in memory: owned (`Vec<u8>`, the default) or borrowed (`&[u8]`, so a file the
/// caller holds is read in place rather than copied first).
#[derive(Debug, Clone)]
pub struct MemorySource<B = Vec<u8>> {
    name: PathBuf,
    bytes: B,
}

impl<B: AsRef<[u8]>> MemorySource<B> {
    /// Wraps `bytes`, reported as `name` in errors.
    pub fn new(name: impl Into<PathBuf>, bytes: B) -> Self {
        Self {
            name: name.into(),
            bytes,
        }
    }
}

impl<B: AsRef<[u8]>> ByteSource for MemorySource<B> {
    fn len(&self) -> u64 {
        self.bytes.as_ref().len() as u64
    }
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let bytes = self.bytes.as_ref();
        let start = usize::try_from(offset).ok();
        match start.and_then(|s| Some(s..s.checked_add(len)?)) {
            Some(r) if r.end <= bytes.len() => Ok(bytes[r].to_vec()),
            _ => Err(EngineError::Safetensors {
                path: self.name.clone(),
                reason: format!(
                    "read of {len} bytes at {offset} is past the end ({} bytes)",
                    bytes.len()
                ),
            }),
        }
    }
    fn name(&self) -> &Path {
        &self.name
    }
}

/// A file opened read-only; tensors are read with positioned reads, so only the tensor being
/// converted is in memory, never the whole file.
#[cfg(not(target_family = "wasm"))]
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
}

#[cfg(not(target_family = "wasm"))]
impl FileSource {
    /// Opens `path` for reading (never for writing).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        let len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
        })
    }
}

#[cfg(not(target_family = "wasm"))]
impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut buf = vec![0u8; len];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| EngineError::io(&self.path, e))?;
        Ok(buf)
    }
    fn name(&self) -> &Path {
        &self.path
    }
}
