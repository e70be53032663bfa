//! Static constructors, run once at start.
//!
//! burn's GPU compiler (cubecl) registers its IR dialects with `inventory`, i.e. static
//! constructors. wasm-ld links a binary that never calls `__wasm_call_ctors` itself as a
//! "command": it wraps *every* export in a call to all constructors, so each call from JavaScript
//! into the module (every WebGPU object handed over, every string passed, every callback) re-ran
//! hundreds of them. That made the worker CPU-bound on the browser side: a forward pass of the
//! 3.3 M demo model cost ≈ 2 s per token in a tab against 0.1 s natively on the same software
//! adapter. Calling the constructors explicitly, first thing in `main`, makes wasm-ld leave the
//! exports alone (the remedy `inventory`'s documentation gives).

#[cfg(target_family = "wasm")]
unsafe extern "C" {
    /// Synthesised by wasm-ld: runs every static constructor of the module.
    fn __wasm_call_ctors();
}

/// Runs the module's static constructors. Call it once, first thing in `main`.
pub fn run() {
    // SAFETY: called once, at the start of `main`, before any code that relies on a registry.
    #[cfg(target_family = "wasm")]
    unsafe {
        __wasm_call_ctors();
    }
}
