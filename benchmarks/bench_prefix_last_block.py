"""The model's last block computes only the tokens the heads read: measured against the full sequence.

The heads read the class and distillation tokens after the last block. Each token's output there depends on
its own query and on every token's key and value, so the last block needs keys/values for all tokens but
queries, attention output, projection, MLP and the final norm for the 1–2 prefix tokens only: about 85% of the
last block's work (≈7% of a 12-block model, ≈40% of the demo's 2-block student), in the forward pass and, since
the patch tokens' last-block outputs reach no loss, in the backward pass too. `deit`'s `VisionTransformer.forward`
does this (`forward_prefix_features`); the reference here is the same model through `forward_features`.

    PYTHONPATH=src python benchmarks/bench_prefix_last_block.py --device cpu --threads 1
    PYTHONPATH=src python benchmarks/bench_prefix_last_block.py --device cuda --amp bf16 --compile
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import Tensor, nn

from common import environment, environment_lines, interleaved, number
from deit import create_model, perf
from deit.precision import resolve_precision


class FullSequence(nn.Module):
    """A VisionTransformer's outputs with every token through every block (what `forward` did before)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Same outputs as `model(images)`."""
        return self.model.forward_head(self.model.forward_features(images))


def main() -> None:
    """Parity of outputs and gradients, then interleaved timing of full vs prefix-only last block."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="deit_small_distilled_patch16_224")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=("bf16", "fp16", "none"), default="none")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile both variants")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = perf.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = resolve_precision(args.amp, device).dtype
    batch = args.batch_size or (512 if device.type == "cuda" else 16)
    steps = args.steps or (20 if device.type == "cuda" else 4)

    torch.manual_seed(0)
    model = create_model(args.model).to(device)
    reference = FullSequence(model)
    images = torch.randn(batch, 3, model.img_size, model.img_size, device=device)

    model.train()
    small = images[:4]
    outputs = reference(small)
    sum(o.float().square().mean() for o in outputs).backward()
    reference_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    sum(o.float().square().mean() for o in model(small)).backward()
    grad_diff = max(float((g - p.grad).abs().max()) for g, p in zip(reference_grads, model.parameters()))
    model.zero_grad(set_to_none=True)
    model.eval()

    full, fast = (perf.compile_model(reference), perf.compile_model(model)) if args.compile else (reference, model)

    def run(module: nn.Module) -> Tensor:
        with perf.inference_context(device, dtype):
            return module(images)

    output_diff = perf.max_abs_diff(run(full), run(fast))
    times = interleaved(
        {"full": lambda: run(full), "prefix-last-block": lambda: run(fast)},
        rounds=args.rounds,
        steps=steps,
        warmup=2,
        device=device,
    )
    rates = {name: batch * 1000 / statistics.median(t) for name, t in times.items()}
    print(environment_lines(environment(device)))
    print(
        f"\n{args.model} bs{batch} {args.amp} {'compiled' if args.compile else 'eager'}: "
        f"full {number(rates['full'])} img/s, prefix-only last block {number(rates['prefix-last-block'])} img/s "
        f"(×{rates['prefix-last-block'] / rates['full']:.3f}); max abs diff: outputs {output_diff:.1e}, "
        f"fp32 gradients {grad_diff:.1e}"
    )


if __name__ == "__main__":
    main()
