//! How the process's allocator treats the engine's large buffers.
//!
//! On the CPU backend every tensor op returns a fresh buffer, and a forward pass of GPT-2 small
//! over 16 × 32 tokens allocates hundreds of megabytes of them (the logits alone are 103 MB).
//! glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh `mmap`s and
//! unmaps them on free, so every such buffer is page-faulted in and zeroed by the kernel again:
//! measured, 2–4 s of system time over six forward passes. Raising the threshold and the trim
//! threshold keeps freed buffers in the heap for the next op (1.4 s of system time, most of it
//! reading the weights).

/// Keeps freed buffers of up to 1 GiB for reuse instead of returning them to the kernel.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const LIMIT: libc::c_int = 1 << 30;
        // SAFETY: `mallopt` only changes allocator parameters; called first thing in `main`.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, LIMIT);
            libc::mallopt(libc::M_TRIM_THRESHOLD, LIMIT);
        }
    }
}

/// The process's peak resident memory so far (`VmHWM` on Linux; `None` elsewhere): `info` and
/// `edit` report it, so memory figures need no external tool.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
