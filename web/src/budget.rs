//! What fits where: the dtype a model's weight matrices are kept in on the page's backend, or why
//! it cannot load there, decided from its config before any weight is read.

use burn::tensor::FloatDType;

use crate::protocol::Compute;

/// Most bytes of weights the CPU backend takes in a tab: WebAssembly memory ends at 4 GiB, and an
/// edit needs room besides the weights (activations, C0 and its factor, the value optimisation).
pub const CPU_WEIGHT_BUDGET: u64 = 2_500_000_000;

/// Whether a config says its checkpoint is stored in half precision (`torch_dtype`, or `dtype` in
/// newer transformers: `float16` / `bfloat16`).
pub fn half_precision_file(config: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(config).is_ok_and(|c| {
        ["torch_dtype", "dtype"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(|v| v.as_str()))
            .any(|d| matches!(d, "float16" | "bfloat16" | "half"))
    })
}

/// The dtype the weight matrices are kept in and why, or why the model cannot load here — decided
/// from the config alone, before any weight is read. WebGPU adapters with `shader-f16` keep f16
/// (half the memory). The CPU backend keeps a half-precision file (`half_file`) in f16 — f32 would
/// double the memory and add no precision — and an f32 file in f32 when it fits in
/// [`CPU_WEIGHT_BUDGET`], else in f16.
pub fn storage_dtype(
    params: u64,
    compute: Compute,
    f16_supported: bool,
    half_file: bool,
) -> Result<(FloatDType, String), String> {
    let gb = |bytes: u64| bytes as f64 / 1e9;
    match compute {
        Compute::WebGpu if f16_supported => Ok((FloatDType::F16, "f16 (the adapter has shader-f16)".into())),
        Compute::WebGpu => Ok((FloatDType::F32, "f32 (the adapter has no shader-f16)".into())),
        Compute::Cpu if half_file && f16_supported && params * 2 <= CPU_WEIGHT_BUDGET => Ok((
            FloatDType::F16,
            "f16 (as the file stores them: half the memory of f32)".into(),
        )),
        Compute::Cpu if params * 4 <= CPU_WEIGHT_BUDGET => Ok((FloatDType::F32, "f32".into())),
        Compute::Cpu if f16_supported && params * 2 <= CPU_WEIGHT_BUDGET => Ok((
            FloatDType::F16,
            format!(
                "f16 (f32 weights, {:.1} GB, would not fit the CPU backend)",
                gb(params * 4)
            ),
        )),
        Compute::Cpu => Err(format!(
            "this model has {:.0} M parameters: {:.1} GB of weights in f16 ({:.1} GB in f32), more than the {:.1} GB \
             the CPU backend can hold in a browser tab (WebAssembly memory ends at 4 GiB). Use a WebGPU adapter, or a \
             model of at most {:.0} M parameters",
            params as f64 / 1e6,
            gb(params * 2),
            gb(params * 4),
            gb(CPU_WEIGHT_BUDGET),
            CPU_WEIGHT_BUDGET as f64 / 2e6
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webgpu_keeps_f16_where_the_adapter_computes_it() {
        assert_eq!(
            storage_dtype(1_558_000_000, Compute::WebGpu, true, false).unwrap().0,
            FloatDType::F16
        );
        assert_eq!(
            storage_dtype(124_000_000, Compute::WebGpu, false, false).unwrap().0,
            FloatDType::F32
        );
    }

    #[test]
    fn the_cpu_keeps_f32_when_it_fits_then_f16_then_refuses_naming_the_size() {
        // GPT-2 small and medium in f32.
        assert_eq!(
            storage_dtype(124_000_000, Compute::Cpu, true, false).unwrap().0,
            FloatDType::F32
        );
        assert_eq!(
            storage_dtype(355_000_000, Compute::Cpu, true, false).unwrap().0,
            FloatDType::F32
        );
        // GPT-2 large (774 M: 3.1 GB in f32) in f16.
        let (dtype, why) = storage_dtype(774_000_000, Compute::Cpu, true, false).unwrap();
        assert_eq!(dtype, FloatDType::F16);
        assert!(why.contains("3.1 GB"), "{why}");
        // GPT2-XL (1.56 B: 3.1 GB in f16) is refused, with its sizes and what would fit.
        let why = storage_dtype(1_558_000_000, Compute::Cpu, true, false).unwrap_err();
        assert!(
            why.contains("1558 M parameters") && why.contains("3.1 GB") && why.contains("WebGPU"),
            "{why}"
        );
        assert!(storage_dtype(774_000_000, Compute::Cpu, false, false).is_err());
    }

    #[test]
    fn the_cpu_keeps_a_half_precision_file_in_f16() {
        // GPT-2 medium stored in f16: 0.7 GB as stored, not 1.4 GB in f32.
        let (dtype, why) = storage_dtype(355_000_000, Compute::Cpu, true, true).unwrap();
        assert_eq!(dtype, FloatDType::F16);
        assert!(why.contains("as the file stores them"), "{why}");
        // Without f16 on the device, f32 as before.
        assert_eq!(
            storage_dtype(355_000_000, Compute::Cpu, false, true).unwrap().0,
            FloatDType::F32
        );
        assert!(half_precision_file(br#"{"torch_dtype": "float16"}"#));
        assert!(half_precision_file(br#"{"dtype": "bfloat16"}"#));
        assert!(!half_precision_file(br#"{"torch_dtype": "float32"}"#));
        assert!(!half_precision_file(b"{}"));
        assert!(!half_precision_file(b"not json"));
    }
}
