"""Peer reference for `tools/benchmark.py --network=resnet32 --compare_torch=...`:
keras_icn's CIFAR ResNet-32 (`keras_icn.networks.resnet`) in PyTorch, with the
Langevin sampler written the way the PyTorch energy-based-model codebases write
it (a Python loop of autograd calls), as ../shared/peers/torch_sgld_reference.py
does for the MNIST CNN. BatchNorm runs in inference mode during sampling, as in
keras_icn.

It prints one JSON line: milliseconds per training step and per Langevin step
at the given batch size, on this machine's CPU. Needs torch (not a dependency
of keras_icn):  python3 -m venv /tmp/torchref &&
  /tmp/torchref/bin/pip install torch==2.13.0 numpy
Run:  /tmp/torchref/bin/python tools/torch_resnet_reference.py --batch_size 128 --steps 5
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def resnet(depth=32, filters=16, num_classes=10):
    layers = [nn.Conv2d(3, filters, 3, 1, 1, bias=False), batch_norm(filters), nn.ReLU()]
    channels = filters
    for stage in range(3):
        for block in range((depth - 2) // 6):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(Block(channels, filters * 2**stage, stride))
            channels = filters * 2**stage
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step_size", type=float, default=0.01)
    parser.add_argument("--noise_stddev", type=float, default=0.01)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = resnet(args.depth)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    images = torch.rand(args.batch_size, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch_size,))

    def train_step():
        net.train()
        optimizer.zero_grad()
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()

    def langevin(num_steps):
        net.eval()
        samples = torch.rand_like(images)
        for _ in range(num_steps):
            samples.requires_grad_(True)
            score = net(samples).gather(1, labels[:, None]).sum()
            grad, = torch.autograd.grad(score, samples)
            samples = (samples.detach() + 0.5 * args.step_size * grad
                       + args.noise_stddev * torch.randn_like(samples)).clamp(0, 1)
        return samples

    for _ in range(3):
        train_step()
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step()
    train_ms = (time.perf_counter() - start) / args.steps * 1e3
    langevin(3)
    start = time.perf_counter()
    langevin(args.steps)
    langevin_ms = (time.perf_counter() - start) / args.steps * 1e3
    print(json.dumps({"framework": "torch " + torch.__version__,
                      "batch_size": args.batch_size,
                      "train_step_ms": round(train_ms, 2),
                      "langevin_step_ms": round(langevin_ms, 2)}))


if __name__ == "__main__":
    main()
