"""Training throughput of vae_core.train against the post's plain PyTorch loop.

Both sides train the same ConvVAE on the same images in the same process, alternating
round by round so that machine noise hits both; medians over rounds (after an untimed warm-up
run of each) are printed, with the ratio, the CPU capability, and each side's validation loss
after the same number of epochs.

    python bench/throughput.py                                   # CPU, auto precision
    python bench/throughput.py --data-root ../shared/mnist       # full MNIST if you have it
    python bench/throughput.py --device cuda --batch-sizes 128 512 2048
    python bench/throughput.py --device cuda --no-cuda-graph         # the eager step on a GPU
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from vae_core import ConvVAE, TrainConfig, evaluate, load_mnist, train
from vae_core.device import cpu_capability, resolve_device


def plain_loop(images: torch.Tensor, epochs: int, batch_size: int, device, seed: int):
    """The post's loop: float tensors in a DataLoader, sigmoid + BCE, .item() every step."""
    torch.manual_seed(seed)
    model = ConvVAE(logvar_max=None).to(device)  # the post's unbounded log-variance head
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(images.float() / 255), batch_size=batch_size, shuffle=True)
    seconds = 0.0
    for _ in range(epochs):
        model.train()
        start, train_loss = time.perf_counter(), 0.0
        for (x,) in loader:
            x = x.to(device)
            optimizer.zero_grad()
            logits, mu, logvar = model(x)
            bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = bce + kld
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    return model, len(images) * epochs / seconds


def ours(data, epochs: int, batch_size: int, device: str, args, seed: int):
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        device=device,
        precision=args.precision,
        compile=args.compile,
        cuda_graph=args.cuda_graph,
        seed=seed,
    )
    result = train(config, data=data)
    # Training images per second, epoch-weighted: the same measure as the plain loop's.
    seconds = sum(len(data.train_x) / m["images_per_second"] for m in result.history)
    return result, len(data.train_x) * epochs / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", help="for vae_core.train (default: auto)")
    p.add_argument("--compile", action="store_true", help="torch.compile in vae_core.train")
    p.add_argument(
        "--no-cuda-graph",
        dest="cuda_graph",
        action="store_false",
        help="the eager step on CUDA instead of the graph-captured one",
    )
    p.add_argument("--data", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument(
        "--train-limit",
        type=int,
        default=8000,
        help="training images per epoch (default 8000; 0 = all)",
    )
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_mnist(args.data, args.data_root).limit_train(args.train_limit or None)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "-"
    print(
        f"machine: {platform.processor() or platform.machine()}, cpu capability "
        f"{cpu_capability()}, torch threads {torch.get_num_threads()}, gpu {gpu}"
    )
    print(
        f"data: {data.source}, {len(data.train_x)} training images x {args.epochs} epochs, "
        f"{args.rounds} rounds; vae_core.train precision={args.precision} "
        f"compile={args.compile} cuda_graph={args.cuda_graph and device.type == 'cuda'}"
    )
    val = data.val_x.to(device)
    for batch_size in args.batch_sizes:
        # Untimed: CUDA's context and cuDNN's autotuning (once per batch shape) are paid once
        # per process, and a sweep's workers outlive their trials (reuse_actors).
        warmup = data.limit_train(min(len(data.train_x), 8 * batch_size))
        plain_loop(warmup.train_x, 1, batch_size, device, seed=0)
        ours(warmup, 1, batch_size, str(device.type), args, seed=0)
        plain_ips, our_ips, plain_val, our_val = [], [], [], []
        for r in range(args.rounds):
            model, ips = plain_loop(data.train_x, args.epochs, batch_size, device, seed=r)
            plain_ips.append(ips)
            plain_val.append(evaluate(model, val).loss)
            result, ips = ours(data, args.epochs, batch_size, str(device.type), args, seed=r)
            our_ips.append(ips)
            our_val.append(evaluate(result.model, val).loss)
        ratio = statistics.median(our_ips) / statistics.median(plain_ips)
        print(
            f"batch {batch_size} ({result.precision}): plain loop "
            f"{statistics.median(plain_ips):,.0f} img/s "
            f"(val loss {statistics.median(plain_val):.2f}), vae_core.train "
            f"{statistics.median(our_ips):,.0f} img/s (val loss {statistics.median(our_val):.2f})"
            f"  ratio {ratio:.2f}x   [per round: plain "
            f"{', '.join(f'{v:,.0f}' for v in plain_ips)}; ours "
            f"{', '.join(f'{v:,.0f}' for v in our_ips)}]"
        )


if __name__ == "__main__":
    main()
