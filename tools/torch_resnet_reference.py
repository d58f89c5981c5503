"""PyTorch reference for `tools/benchmark.py --compare_torch=PYTHON`: keras_icn's
networks in PyTorch (the MNIST CNN of ../shared/peers/torch_sgld_reference.py,
imported from there, the CIFAR ResNet of `keras_icn.networks.resnet` and the fast
CIFAR network of `keras_icn.networks.fast_cnn`), with
the Langevin sampler written the way the PyTorch energy-based-model codebases
write it (a Python loop of autograd calls, as in JEM's code), and the whole ICN
training step as a careful PyTorch user would write it for the same algorithm as
keras_icn's defaults (`synthesis="data"`):

  - `synthesis_batch_size` chains of `num_langevin_steps` steps, each starting
    from one of the batch's images and moving toward a random other class, with
    BatchNorm in inference mode (as in keras_icn);
  - `pool_batch_size` pseudo-negatives replayed from a ring-buffer pool (this
    step's stand in while it is empty), the fresh ones added after the update;
  - one training-mode pass over positives and pseudo-negatives together, the
    loss of keras_icn/losses.py (cross-entropy + introspective_weight *
    [mean softplus(-f_y(x)) over positives + mean softplus(f_k(x-)) over
    pseudo-negatives]) and one optimizer step: Adam at 1e-3 for the MNIST CNN
    (keras_icn's "grey" recipe), AdamW at 1e-3 with weight decay 0.05 for the
    ResNet (the "resnet" recipe's Adam with decoupled weight decay), and for
    fast_cnn the "fast" recipe's: Nesterov SGD at momentum 0.85 and learning
    rate 1.5 with decoupled weight decay 0.0089 (`SGDW`), and cross-entropy
    with label smoothing 0.2.

Differences from keras_icn's optimizers: these run at the recipe's peak
learning rate throughout, without the cosine schedule of the "resnet" and
"fast" recipes (for fast_cnn after a warm-up from a fifth of the peak), which
changes what a step computes, not what it costs. Keras' Nesterov SGD keeps the
learning rate inside its velocity, PyTorch's multiplies the velocity by it at
each step: the same updates at a constant learning rate, different ones only
while a schedule changes it. Keras' weight decay is decoupled (w -= lr * wd * w
for every trained variable, before the momentum step); PyTorch's SGD has only a
coupled one (added to the gradient), so `SGDW` applies Keras' before the step.

fast_cnn's first layer stands in for `keras_icn.whitening.PatchWhitening`: a
2x2 valid convolution to 2 * 2 * 2 * 3 = 24 channels with fixed random filters
(keras_icn fits its filters to the data, which changes what it computes, not
what it costs) and a trained bias, as Keras' layer has.

With --compile the ICN step is also timed with the network under
`torch.compile`; if compiling fails on this machine the output says so
("torch_compile": "failed: ...") and has no compiled figure.

Output, one JSON object per line. Without --serve: one line with the setup and
one round's figures (ms per plain training step, per Langevin step of a
`--steps`-step loop, per ICN step). With --serve (how benchmark.py runs it):
after the warm-up one line with the setup, then one line of one round's
figures per line read from stdin, until stdin closes; benchmark.py times its
own figures in between, so each round of both sees the same spell of the machine.

Needs torch (not a dependency of keras_icn):  python3 -m venv /tmp/torchref &&
  /tmp/torchref/bin/pip install torch==2.13.0 numpy
Run:  /tmp/torchref/bin/python tools/torch_resnet_reference.py --network resnet32 --steps 5
      /tmp/torchref/bin/python tools/torch_resnet_reference.py --network fast_cnn --batch_size 1024
"""
import argparse
import json
import pathlib
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PEERS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "peers"
NUM_CLASSES = 10


def batch_norm(channels):
    return nn.BatchNorm2d(channels, momentum=0.1, eps=1e-5)  # keras_icn: momentum 0.9


class Block(nn.Module):
    def __init__(self, in_channels, filters, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, filters, 3, stride, 1, bias=False)
        self.bn1 = batch_norm(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = batch_norm(filters)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != filters:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, filters, 1, stride, bias=False),
                                          batch_norm(filters))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def resnet(depth=32, filters=16, num_classes=NUM_CLASSES):
    layers = [nn.Conv2d(3, filters, 3, 1, 1, bias=False), batch_norm(filters), nn.ReLU()]
    channels = filters
    for stage in range(3):
        for block in range((depth - 2) // 6):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(Block(channels, filters * 2**stage, stride))
            channels = filters * 2**stage
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


class Scale(nn.Module):
    """Multiplies by `factor` (Keras' Rescaling)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def fast_batch_norm(channels):
    # keras_icn: momentum 0.4, a shift but no scale (here a scale frozen at 1).
    norm = nn.BatchNorm2d(channels, momentum=0.6, eps=1e-5)
    norm.weight.requires_grad_(False)
    return norm


def fast_conv(in_channels, filters):
    # keras_icn's Dirac: the first min(in, out) filters pass their channel through.
    conv = nn.Conv2d(in_channels, filters, 3, 1, 1, bias=False)
    nn.init.dirac_(conv.weight[:min(in_channels, filters)])
    return conv


def fast_cnn(widths=(64, 256, 256), size=32, num_classes=NUM_CLASSES):
    """`keras_icn.networks.fast_cnn` for `size` x `size` x 3 images."""
    whiten = nn.Conv2d(3, 2 * 2 * 2 * 3, 2)  # PatchWhitening: fixed filters, trained bias
    whiten.weight.requires_grad_(False)
    layers = [whiten, nn.GELU()]
    channels, size = whiten.out_channels, size - 1
    for width in widths:
        layers += [fast_conv(channels, width), nn.MaxPool2d(2), fast_batch_norm(width), nn.GELU(),
                   fast_conv(width, width), fast_batch_norm(width), nn.GELU()]
        channels, size = width, size // 2
    layers += [nn.MaxPool2d(size), nn.Flatten(), nn.Linear(channels, num_classes, bias=False),
               Scale(1 / 9)]
    return nn.Sequential(*layers)


class SGDW(torch.optim.SGD):
    """Nesterov SGD with weight decay decoupled as Keras' optimizers apply it:
    every parameter w -= lr * weight_decay * w, then the momentum step.
    (PyTorch's SGD couples its weight_decay: it adds it to the gradient.)"""

    def __init__(self, params, lr, momentum, weight_decay):
        super().__init__(params, lr, momentum=momentum, nesterov=True)
        self.decoupled_weight_decay = weight_decay

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for parameter in group["params"]:
                parameter.mul_(1 - group["lr"] * self.decoupled_weight_decay)
        return super().step(closure)


def fast_cnn_widths(network):
    """The widths of "fast_cnn" (64, 256, 256) or "fast_cnn<w>" (w, 4w, 4w), as
    `keras_icn.networks.build` reads them; None for another name."""
    if network == "fast_cnn":
        return (64, 256, 256)
    width = network[len("fast_cnn"):]
    if network.startswith("fast_cnn") and width.isdigit() and int(width) >= 1:
        return (int(width), 4 * int(width), 4 * int(width))
    return None


def build(network):
    """`network` ("mnist_cnn", "resnet<depth>", "fast_cnn" or "fast_cnn<w>") in
    PyTorch: (module, image shape (C, H, W), its optimizer and label smoothing as
    keras_icn's recipe for it has them)."""
    if network == "mnist_cnn":
        # The peers' network itself, so the Langevin figures stay those of their script.
        sys.path.insert(0, str(PEERS))
        try:
            from torch_sgld_reference import mnist_cnn
        except ImportError as error:
            raise SystemExit(f"--network=mnist_cnn needs {PEERS / 'torch_sgld_reference.py'}: "
                             f"{error}") from None
        net = mnist_cnn(NUM_CLASSES)
        return net, (1, 28, 28), torch.optim.Adam(net.parameters(), 1e-3), 0.0
    widths = fast_cnn_widths(network)
    if widths:  # keras_icn's "fast" recipe; only the trained parameters decay, as in Keras
        net = fast_cnn(widths)
        trained = [parameter for parameter in net.parameters() if parameter.requires_grad]
        return net, (3, 32, 32), SGDW(trained, 1.5, momentum=0.85, weight_decay=0.0089), 0.2
    depth = network[len("resnet"):]
    if not (network.startswith("resnet") and depth.isdigit() and int(depth) >= 8
            and (int(depth) - 2) % 6 == 0):
        raise SystemExit("--network must be mnist_cnn, fast_cnn, fast_cnn<w> or resnet<depth> "
                         "with depth 6n + 2 (8, 14, 20, 32, ...). Received: "
                         f"--network={network}")
    net = resnet(int(depth))
    return net, (3, 32, 32), torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05), 0.0


def langevin(net, samples, targets, num_steps, step_size, noise_stddev):
    """`num_steps` Langevin steps of `samples` toward class `targets`, BatchNorm in
    inference mode; a Python loop of autograd calls, as the PyTorch peers write it."""
    net.eval()
    for _ in range(num_steps):
        samples.requires_grad_(True)
        score = net(samples).gather(1, targets[:, None]).sum()
        grad, = torch.autograd.grad(score, samples)
        samples = (samples.detach() + 0.5 * step_size * grad
                   + noise_stddev * torch.randn_like(samples)).clamp(0, 1)
    return samples


def introspective_loss(logits, labels, negative_logits, negative_labels, weight,
                       label_smoothing):
    """keras_icn/losses.py: cross-entropy (its targets smoothed by
    `label_smoothing`) + weight * the introspective bracket."""
    bracket = (F.softplus(-logits.gather(1, labels[:, None])).mean()
               + F.softplus(negative_logits.gather(1, negative_labels[:, None])).mean())
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing) + weight * bracket


class ICNStep:
    """One ICN training step of keras_icn's defaults on a batch; the pool persists
    across calls. Call it with the eager or the compiled module (same parameters)."""

    def __init__(self, optimizer, label_smoothing, image_shape, args):
        self.optimizer, self.label_smoothing, self.args = optimizer, label_smoothing, args
        self.pool = torch.zeros((args.pool_capacity,) + image_shape)
        self.pool_labels = torch.zeros(args.pool_capacity, dtype=torch.long)
        self.size = self.next = 0

    def __call__(self, net, images, labels):
        args = self.args
        rows = torch.arange(args.synthesis_batch_size) % len(images)  # copies: chains own them
        shift = torch.randint(1, NUM_CLASSES, (args.synthesis_batch_size,))
        fresh_labels = (labels[rows] + shift) % NUM_CLASSES
        fresh = langevin(net, images[rows], fresh_labels, args.num_langevin_steps,
                         args.step_size, args.noise_stddev)
        if self.size:
            drawn = torch.randint(0, self.size, (args.pool_batch_size,))
            replayed, replayed_labels = self.pool[drawn], self.pool_labels[drawn]
        else:
            stand_in = torch.arange(args.pool_batch_size) % len(fresh)
            replayed, replayed_labels = fresh[stand_in], fresh_labels[stand_in]
        negative_labels = torch.cat([fresh_labels, replayed_labels])
        net.train()  # one pass: BatchNorm's batch statistics over positives and negatives
        both = net(torch.cat([images, fresh, replayed]))
        loss = introspective_loss(both[:len(images)], labels, both[len(images):],
                                  negative_labels, args.introspective_weight,
                                  self.label_smoothing)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        slots = (self.next + torch.arange(len(fresh))) % args.pool_capacity
        self.pool[slots], self.pool_labels[slots] = fresh, fresh_labels
        self.next = int(slots[-1] + 1) % args.pool_capacity
        self.size = min(self.size + len(fresh), args.pool_capacity)


def elapsed_ms(function):
    start = time.perf_counter()
    function()
    return 1e3 * (time.perf_counter() - start)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="resnet32",
                        help="mnist_cnn, resnet<depth>, fast_cnn or fast_cnn<w> (widths w, 4w, "
                             "4w; fast_cnn: 64, 256, 256)")
    parser.add_argument("--depth", type=int, help="The older spelling of --network=resnet<depth>.")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="Langevin steps in the timed loop.")
    parser.add_argument("--step_size", type=float, default=0.01)
    parser.add_argument("--noise_stddev", type=float, default=0.01)
    # The ICN step: keras_icn's defaults.
    parser.add_argument("--num_langevin_steps", type=int, default=5)
    parser.add_argument("--synthesis_batch_size", type=int, default=16)
    parser.add_argument("--pool_batch_size", type=int, default=32)
    parser.add_argument("--pool_capacity", type=int, default=8192)
    parser.add_argument("--introspective_weight", type=float, default=0.1)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="Also time the ICN step with the network under torch.compile.")
    parser.add_argument("--serve", action="store_true",
                        help="Print the setup, then one round per line read from stdin.")
    args = parser.parse_args()
    if args.depth is not None:
        args.network = f"resnet{args.depth}"
    for name in ("batch_size", "steps", "num_langevin_steps", "synthesis_batch_size",
                 "pool_capacity"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1. Received: --{name}={getattr(args, name)}")
    return args


def main():
    args = parse_args()
    torch.manual_seed(0)
    net, image_shape, optimizer, label_smoothing = build(args.network)
    images = torch.rand((args.batch_size,) + image_shape)
    labels = torch.randint(0, NUM_CLASSES, (args.batch_size,))
    icn_step = ICNStep(optimizer, label_smoothing, image_shape, args)

    def train_step():
        net.train()
        optimizer.zero_grad()
        F.cross_entropy(net(images), labels, label_smoothing=label_smoothing).backward()
        optimizer.step()

    figures = {  # name: (one timed call, steps it amortises)
        "train_step_ms": (train_step, 1),
        "langevin_step_ms": (lambda: langevin(net, torch.rand_like(images), labels, args.steps,
                                              args.step_size, args.noise_stddev), args.steps),
        "icn_step_ms": (lambda: icn_step(net, images, labels), 1),
    }
    setup = {"framework": "torch " + torch.__version__, "network": args.network,
             "batch_size": args.batch_size, "threads": torch.get_num_threads(),
             "torch_compile": "off"}
    if args.compile:
        # Fixed batch sizes (chains, training pass): static shapes, one graph for
        # each and its BatchNorm mode, compiled here; a second call would recompile
        # if anything were left to.
        compiled = torch.compile(net, dynamic=False)
        try:
            for _ in range(2):
                icn_step(compiled, images, labels)
            figures["icn_step_ms_compiled"] = (lambda: icn_step(compiled, images, labels), 1)
            setup["torch_compile"] = "on"
        except Exception as error:  # reported, not hidden: the figure is then missing
            message = str(error).strip().splitlines()
            setup["torch_compile"] = (f"failed: {type(error).__name__}: "
                                      f"{message[0] if message else ''}")[:500]
    for function, _ in figures.values():  # warm-up: first-call costs stay out of the figures
        function()

    def one_round():
        return {name: round(elapsed_ms(function) / steps, 2)
                for name, (function, steps) in figures.items()}

    if not args.serve:
        print(json.dumps({**setup, **one_round()}), flush=True)
        return
    print(json.dumps(setup), flush=True)
    for _ in sys.stdin:
        print(json.dumps(one_round()), flush=True)


if __name__ == "__main__":
    main()
