//! Short, readable reasons for GPU failures. burn's errors carry a chain of causes and a backtrace
//! section, and a panic report starts with a source location: the page shows only the innermost
//! cause (the full text still goes to the console).

/// The innermost cause of an error chain such as
/// `read failed: X\nCaused by:\n  Y\nBacktrace:\n…` → `Y`; the text itself when it has no chain.
pub fn innermost_cause(error: &str) -> String {
    let body = error.split("Backtrace:").next().unwrap_or(error);
    let cause = body.rsplit("Caused by:").next().unwrap_or(body);
    let line = cause
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| error.trim());
    line.to_string()
}

/// A panic's message without its `panicked at FILE:LINE:COL:` prefix.
pub fn panic_message(report: &str) -> String {
    match report.strip_prefix("panicked at ") {
        Some(rest) => rest.split_once(":\n").map_or(rest, |(_, msg)| msg).trim().to_string(),
        None => report.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_cause_is_kept() {
        let e = "numerical problem: device read failed: The device is poisoned\nCaused by:\n  The device is poisoned\nCaused by:\n  Destroyed: Device was destroyed.\nBacktrace:\nNo backtrace available";
        assert_eq!(innermost_cause(e), "Destroyed: Device was destroyed.");
        assert_eq!(innermost_cause("plain error"), "plain error");
        assert_eq!(innermost_cause("x\nCaused by:\n\n"), "x\nCaused by:");
    }

    #[test]
    fn panic_locations_are_dropped() {
        let p = "panicked at /root/.cargo/registry/src/x/cubecl-wgpu/src/compute/device_poison.rs:42:17:\nwgpu error: Out of Memory";
        assert_eq!(panic_message(p), "wgpu error: Out of Memory");
        assert_eq!(panic_message("something else"), "something else");
    }
}
