//! Choosing the burn device: the only place in the CLI where a backend is picked.

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::DeviceKind;

/// `--device` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// A hardware GPU through wgpu (Vulkan/Metal/DX12) when one exists, else the CPU.
    Auto,
    /// wgpu's default adapter (a software Vulkan such as lavapipe counts).
    Gpu,
    /// The `flex` CPU backend.
    Cpu,
}

/// `--dtype` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (where the device supports them).
    F16,
    /// bfloat16 (where the device supports it).
    Bf16,
}

impl Precision {
    /// The dtype weight matrices are stored in.
    pub fn float_dtype(self) -> burn::tensor::FloatDType {
        match self {
            Self::F32 => burn::tensor::FloatDType::F32,
            Self::F16 => burn::tensor::FloatDType::F16,
            Self::Bf16 => burn::tensor::FloatDType::BF16,
        }
    }
}

/// A device choice and a compute precision.
pub type Target = (DeviceChoice, Precision);

/// A chosen device and a human-readable description of it.
pub struct Selected {
    pub device: Device,
    pub description: String,
}

fn wgpu(kind: DeviceKind) -> Result<Selected> {
    let device = Device::wgpu_options()
        .device_kind(kind.clone())
        .init()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = device.identity().map(|i| i.name).unwrap_or_else(|| format!("{kind:?}"));
    Ok(Selected {
        device,
        description: format!("gpu (wgpu: {name})"),
    })
}

/// Picks the device for `choice`.
pub fn select(choice: DeviceChoice) -> Result<Selected> {
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Gpu => wgpu(DeviceKind::DefaultDevice).context(
            "no wgpu adapter could be initialised (install a Vulkan driver, e.g. mesa-vulkan-drivers, or use --device cpu)",
        ),
        DeviceChoice::Auto => {
            for kind in [DeviceKind::DiscreteGpu(0), DeviceKind::IntegratedGpu(0)] {
                if let Ok(sel) = wgpu(kind) {
                    return Ok(sel);
                }
            }
            Ok(cpu())
        }
    }
}

fn cpu() -> Selected {
    Selected {
        device: Device::flex(),
        description: "cpu (flex)".into(),
    }
}
