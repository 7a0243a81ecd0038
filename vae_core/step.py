"""The training step: forward, negative ELBO, backward and Adam for one batch of indices.

Two implementations behind one call, `step(idx)`, chosen by `make_step`:
- EagerStep (CPU, or CUDA with cuda_graph off or torch.compile on): plain PyTorch, one kernel
  launch per op. On a GPU this small VAE is launch-bound: ~205 launches a step, 1.2 ms of GPU
  work against ~8 ms of wall (torch.profiler on an H100).
- GraphStep (CUDA): the whole step for a full batch captured once in a CUDA graph and replayed,
  so a step is one graph launch (1.56 ms fp32 / 1.39 ms bf16 at batch 128 on that H100).
  See https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture for the pattern.

The last short batch of an epoch (n % batch_size images) runs eagerly on both paths, so every
image is seen every epoch and both paths train on the same batches; a batch of one is skipped,
because BatchNorm cannot normalise it in training mode.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

from vae_core.evaluate import autocast, to_float
from vae_core.loss import negative_elbo

WARMUP_STEPS = 3  # eager steps on a side stream before capture (the torch docs' example uses 3)


def uses_cuda_graph(device: torch.device, cuda_graph: bool, compile_: bool) -> bool:
    """Graph capture on CUDA unless turned off; torch.compile takes the eager step (its
    mode="reduce-overhead" makes graphs of its own, which cannot nest in ours)."""
    return device.type == "cuda" and cuda_graph and not compile_


def make_optimizer(model: torch.nn.Module, lr: float, *, capturable: bool) -> torch.optim.Adam:
    # capturable=True keeps Adam's step counter on the GPU, so step() reads nothing back to the
    # host and can be captured; off elsewhere, where it would only cost time. A captured graph
    # would bake a float lr into its kernels, so there the rate is a device tensor, read at
    # every replay and changed in place by a schedule (vae_core.schedule.set_lr).
    if capturable:
        lr = torch.tensor(float(lr), device=next(model.parameters()).device)
    return torch.optim.Adam(model.parameters(), lr=lr, capturable=capturable)


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() with plain-float rates, so that a checkpoint resumes on either
    path: a CPU Adam refuses the tensor rate of graph capture's (load_optimizer_state)."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:  # new dicts: the optimizer's own groups stay as they are
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = group["lr"].item()
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """optimizer.load_state_dict, keeping this optimizer's own capturable/foreach/fused flags
    and the kind of its rate (a float, or graph capture's device tensor, filled in place).

    load_state_dict copies the saved param groups' flags too, so a CPU checkpoint would turn
    graph capture's Adam non-capturable (and a GPU one would make a CPU Adam capturable, which
    CPUs refuse). The step counters move to where the kept flags want them: on the parameter's
    device for capturable/fused Adam, on the CPU otherwise.
    """
    own = [
        {k: group[k] for k in ("capturable", "foreach", "fused", "lr") if k in group}
        for group in optimizer.param_groups
    ]
    # load_state_dict keeps a saved tensor that already has the right device and dtype, and
    # Adam then updates it in place: copy, so that the caller's checkpoint is never changed.
    optimizer.load_state_dict(copy.deepcopy(state))
    for group, flags in zip(optimizer.param_groups, own, strict=True):
        rate = flags.pop("lr")
        if isinstance(rate, torch.Tensor):  # keep our own tensor: a graph may read it later
            rate.fill_(float(group["lr"]))
            group["lr"] = rate
        else:
            group["lr"] = float(group["lr"])
        group.update(flags)
        on_device = flags.get("capturable", False) or flags.get("fused", False)
        for p in group["params"]:
            slot = optimizer.state.get(p, {})
            if isinstance(slot.get("step"), torch.Tensor):
                where = p.device if on_device else torch.device("cpu")
                slot["step"] = slot["step"].to(dtype=torch.float32, device=where)


@contextmanager
def rewound(model: torch.nn.Module, optimizer: torch.optim.Optimizer, noise: torch.Generator):
    """Whatever runs inside leaves the weights, BatchNorm statistics, Adam state and the noise
    generator as they were, restored in place so that tensors captured by a graph stay valid.

    Adam state created inside (a fresh optimizer's) is zeroed: a fresh Adam state is step 0
    with zero moments, so the run continues exactly as if the inside had never happened.
    """
    weights = [t.detach().clone() for t in model.state_dict().values()]
    moments = {p: {k: v.clone() for k, v in s.items()} for p, s in optimizer.state.items()}
    rng = noise.get_state()
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, saved in zip(model.state_dict().values(), weights, strict=True):
                tensor.copy_(saved)
            for p, slot in optimizer.state.items():
                for key, value in slot.items():
                    if p in moments:
                        value.copy_(moments[p][key])
                    else:
                        value.zero_()
        noise.set_state(rng)


class EagerStep:
    """One optimiser step per call, op by op. `loss_sum` accumulates loss x batch size on the
    device: a per-step .item() would stall a GPU every step."""

    def __init__(self, model, forward, optimizer, noise, images, precision, *, set_to_none=True):
        self.model, self.forward, self.optimizer, self.noise = model, forward, optimizer, noise
        self.images, self.precision = images, precision
        self.set_to_none = set_to_none
        self.loss_sum = torch.zeros((), device=images.device)

    def __call__(self, idx: torch.Tensor) -> None:
        x = to_float(self.images[idx])  # (B, 1, 28, 28) channels-last
        with autocast(self.images.device, self.precision):
            logits, mu, logvar = self.forward(x, generator=self.noise)
        loss = negative_elbo(logits, x, mu, logvar).total
        self.optimizer.zero_grad(set_to_none=self.set_to_none)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(idx)


class GraphStep:
    """Full batches replay one CUDA graph of the whole step; any other size runs eagerly.

    Static buffers: the graph reads the batch's indices from `self.idx` (copied in before each
    replay) and gathers the images from the resident uint8 training tensor itself, so a step
    moves batch_size int64s, not images. Weights, gradients, Adam state and `loss_sum` are the
    tensors captured; they are only ever changed in place from here on.
    """

    def __init__(self, model, optimizer, noise, images, batch_size, precision):
        self.model, self.optimizer, self.noise = model, optimizer, noise
        self.images, self.batch_size, self.precision = images, batch_size, precision
        device = images.device
        self.loss_sum = torch.zeros((), device=device)
        self.idx = torch.arange(batch_size, device=device) % len(images)  # any valid batch
        # Gradients are the graph's own (static) tensors: zero them in place, never drop them.
        self.eager = EagerStep(model, model, optimizer, noise, images, precision, set_to_none=False)
        self.eager.loss_sum = self.loss_sum
        self.graph = self._capture()

    def _body(self) -> None:
        x = to_float(self.images[self.idx])
        # No autocast weight cache: cast weights made during capture would be freed after it
        # while the graph still reads them (torch.cuda.make_graphed_callables requires the same).
        with torch.autocast(
            "cuda", dtype=torch.bfloat16, enabled=self.precision == "bf16", cache_enabled=False
        ):
            logits, mu, logvar = self.model(x, generator=self.noise)
        loss = negative_elbo(logits, x, mu, logvar).total
        loss.backward()  # gradients were None at capture: replays overwrite, never accumulate
        self.optimizer.step()
        self.loss_sum.add_(loss.detach() * self.batch_size)

    def _capture(self) -> torch.cuda.CUDAGraph:
        self.model.train()
        # Warm-up and capture must not move training on: the run starts from the state given
        # (fresh or a checkpoint's), which keeps resumed runs equal to uninterrupted ones.
        with rewound(self.model, self.optimizer, self.noise):
            # Eager warm-up on a side stream (capture cannot happen on the default one):
            # creates Adam's state, runs cuDNN's autotuning and the autograd engine's lazy
            # set-up, none of which may happen during capture.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream().wait_stream(side)
            # backward() inside the capture allocates .grad from the graph's private pool.
            self.optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            # The reparameterisation draws from our own generator, not the default one: the
            # graph must own its state so that each replay draws fresh noise, in eager order.
            graph.register_generator_state(self.noise)
            with torch.cuda.graph(graph, stream=side):
                self._body()
        torch.cuda.current_stream().synchronize()
        return graph

    def __call__(self, idx: torch.Tensor) -> None:
        if len(idx) != self.batch_size:
            self.eager(idx)
            return
        self.idx.copy_(idx)
        self.graph.replay()


def make_step(model, forward, optimizer, noise, images, batch_size, precision, *, graph):
    """GraphStep when `graph` and a full batch exists, else EagerStep (see the module doc)."""
    if graph and len(images) >= batch_size:
        return GraphStep(model, optimizer, noise, images, batch_size, precision)
    return EagerStep(model, forward, optimizer, noise, images, precision)
