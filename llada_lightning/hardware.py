"""Peak dense matmul FLOP/s of known GPUs, the denominator of MFU (`flops.mfu`): plain Python, torch only on demand.

Dense bf16 tensor-core peaks from NVIDIA's datasheets (half the "with sparsity" figures they headline), fp16 for the
V100, which has no bf16. Matched in order, case-insensitively, against `torch.cuda.get_device_name()`: more specific
names first (an "NVIDIA H100 PCIe" is not an SXM H100). Another accelerator: set `train.peak_flops`.
"""

from __future__ import annotations

from typing import Any

# (substring of the device name, dense FLOP/s, source)
GPU_PEAK_FLOPS: tuple[tuple[str, float, str], ...] = (
    ("H100 PCIe", 756e12, "NVIDIA H100 datasheet: PCIe, BF16 1,513 TFLOPS with sparsity"),
    ("H100 NVL", 835e12, "NVIDIA H100 datasheet: NVL, BF16 1,671 TFLOPS with sparsity"),
    ("H100", 989e12, "NVIDIA H100 datasheet: SXM, BF16 1,979 TFLOPS with sparsity"),
    ("H200", 989e12, "NVIDIA H200 datasheet: BF16 1,979 TFLOPS with sparsity"),
    ("A100", 312e12, "NVIDIA A100 datasheet: BF16 tensor core 312 TFLOPS"),
    ("L40S", 362e12, "NVIDIA L40S datasheet: BF16 362.05 TFLOPS (733 with sparsity)"),
    ("A10G", 125e12, "NVIDIA A10 datasheet: BF16 125 TFLOPS (no separate A10G figure is published)"),
    ("V100", 125e12, "NVIDIA V100 datasheet: SXM2 FP16 tensor 125 TFLOPS (no bf16)"),
)


def peak_flops_for(device_name: str) -> float | None:
    """The dense peak of a GPU by its name (`torch.cuda.get_device_name()`), or None when it is not in the table."""
    name = device_name.lower()
    for pattern, peak, _ in GPU_PEAK_FLOPS:
        if pattern.lower() in name:
            return peak
    return None


def device_peak_flops(device: Any) -> float | None:
    """The table's peak for a CUDA `device` (torch.device or index), None for any other device or an unknown GPU."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_flops_for(torch.cuda.get_device_name(device))
