"""PyTorch reference side of the nasflow benchmark (bench/run.sh runs it).

Written from the DARTS description in /work/shared/specs/gradient-nas.md, for
timing only: it builds the same networks and steps as
`nas/examples/bench.rs` (same case names, shapes, optimiser settings) and
prints one JSON line per case. Needed only for the benchmark, never by
nasflow, its tests or CI.

    OMP_NUM_THREADS=2 python bench/torch_bench.py CASE
    BENCH_DEVICE=cuda python bench/torch_bench.py CASE   # on a GPU
"""

import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
torch.set_num_threads(THREADS)
torch.manual_seed(0)
RSS_AFTER_IMPORT_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
# Every tensor and parameter is created on this device (cpu, or cuda on a GPU
# machine: the same side as nasflow's BENCH_DEVICE).
DEVICE = os.environ.get("BENCH_DEVICE", "cpu")
torch.set_default_device(DEVICE)


def sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()

DARTS_OPS = [
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
]

# The published DARTS_V2 cell (gradient-nas.md §5.1): (op, input state) per edge,
# two edges per node.
DARTS_V2 = {
    "normal": [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
               ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
               ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    "concat": [2, 3, 4, 5],
}


# ------------------------------------------------------------------ ops

class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad, affine):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, stride, pad, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k (stride, dilation), pointwise 1x1, BN."""

    def __init__(self, c_in, c_out, k, stride, pad, dil, affine):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dil, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine))


class SepConv(nn.Sequential):
    """Two DilConv(dilation 1) blocks, the first carrying the stride."""

    def __init__(self, c_in, c_out, k, stride, pad, affine):
        super().__init__(DilConv(c_in, c_in, k, stride, pad, 1, affine),
                         DilConv(c_in, c_out, k, 1, pad, 1, affine))


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """ReLU, two 1x1 stride-2 convs on x and x shifted by one pixel, concat, BN."""

    def __init__(self, c_in, c_out, affine):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = F.relu(x)
        return self.bn(torch.cat([self.conv1(x), self.conv2(x[:, :, 1:, 1:])], dim=1))


def make_op(name, c, stride, affine):
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return SepConv(c, c, k, stride, k // 2, affine)
    if name.startswith("dil_conv_"):
        k = int(name[-1])
        return DilConv(c, c, k, stride, k // 2 * 2, 2, affine)
    raise ValueError(name)


# ------------------------------------------------------------------ supernet

class MixedOp(nn.Module):
    """sum_k w_k op_k(x); pools are followed by BN(affine=False) at search time."""

    def __init__(self, c, stride):
        super().__init__()
        ops = []
        for name in DARTS_OPS:
            op = make_op(name, c, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self.ops))


def preprocess(c_pp, c_p, c, reduction_prev, affine):
    pre0 = FactorizedReduce(c_pp, c, affine) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine)
    return pre0, ReLUConvBN(c_p, c, 1, 1, 0, affine)


class SearchCell(nn.Module):
    def __init__(self, steps, multiplier, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.steps, self.multiplier = steps, multiplier
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and j < 2 else 1) for i in range(steps) for j in range(i + 2))

    def forward(self, s0, s1, weights):
        states = [self.pre0(s0), self.pre1(s1)]
        offset = 0
        for _ in range(self.steps):
            s = sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.multiplier:], dim=1)


class SearchNetwork(nn.Module):
    def __init__(self, in_ch, c, classes, layers, steps=4, multiplier=4, stem_mult=3):
        super().__init__()
        c_curr = stem_mult * c
        self.stem = nn.Sequential(nn.Conv2d(in_ch, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(steps, multiplier, c_pp, c_p, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c_curr
        self.classifier = nn.Linear(c_p, classes)
        k = sum(i + 2 for i in range(steps))
        self.alphas = [(1e-3 * torch.randn(k, len(DARTS_OPS))).requires_grad_(True) for _ in range(2)]

    def forward(self, x):
        w_normal = F.softmax(self.alphas[0], dim=-1)
        w_reduce = F.softmax(self.alphas[1], dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


# ------------------------------------------------------------------ eval network

def drop_path(x, drop_prob):
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1).bernoulli_(keep)
    return x.div(keep).mul(mask)


class EvalCell(nn.Module):
    def __init__(self, genotype, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev, affine=True)
        edges = genotype["reduce" if reduction else "normal"]
        self.inputs = [i for _, i in edges]
        self.ops = nn.ModuleList(
            make_op(name, c, 2 if reduction and i < 2 else 1, affine=True) for name, i in edges)
        self.concat = genotype["concat"]

    def forward(self, s0, s1, drop_prob):
        states = [self.pre0(s0), self.pre1(s1)]
        for n in range(len(self.ops) // 2):
            s = 0
            for k in (2 * n, 2 * n + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[k], nn.Identity):
                    h = drop_path(h, drop_prob)
                s = s + h
            states.append(s)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    def __init__(self, c, classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False), nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(768, classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    def __init__(self, genotype, c, classes, layers, stem_mult=3):
        super().__init__()
        c_curr = stem_mult * c
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, c
        self.cells = nn.ModuleList()
        self.aux_cell = 2 * layers // 3
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(EvalCell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, len(genotype["concat"]) * c_curr
            if i == self.aux_cell:
                c_aux = c_p
        self.aux = AuxiliaryHead(c_aux, classes)
        self.classifier = nn.Linear(c_p, classes)

    def forward(self, x, drop_prob):
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop_prob)
            if i == self.aux_cell and self.training:
                aux = self.aux(s1)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1)), aux


# ------------------------------------------------------------------ cases

def uniform(*shape, scale=1.0, grad=False):
    return ((torch.rand(*shape) * 2 - 1) * scale).requires_grad_(grad)


def single_op(op):
    kind, stride = op.rsplit("_s", 1)
    stride = int(stride)
    x = uniform(64, 16, 32, 32, grad=True)
    dw = {"dw3": (3, 1, 1), "dw5": (5, 2, 1), "dil3": (3, 2, 2), "dil5": (5, 4, 2)}
    if kind in dw:
        k, pad, dil = dw[kind]
        w = uniform(16, 1, k, k, scale=0.3, grad=True)
        f = lambda: F.conv2d(x, w, None, stride, pad, dil, groups=16)
    elif kind == "max":
        f = lambda: F.max_pool2d(x, 3, stride, 1)
    elif kind == "avg":
        f = lambda: F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    else:
        raise SystemExit(f"unknown op case op_{op}")

    def step():
        f().sum().backward()
    return step


def mixed_edge(b, c, hw, stride):
    edge = MixedOp(c, stride).train()
    alpha = (1e-3 * torch.randn(len(DARTS_OPS))).requires_grad_(True)
    x = uniform(b, c, hw, hw, grad=True)

    def step():
        edge(x, F.softmax(alpha, dim=-1)).sum().backward()
    return step


def search_step(in_ch, hw, c, layers, batch=32):
    """First order: arch step on the valid batch (Adam on alpha), then weight
    step on the train batch (SGD momentum, clip 5), as DARTS's train loop."""
    net = SearchNetwork(in_ch, c, 10, layers).train()
    w_opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(net.alphas, 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    x, y = uniform(batch, in_ch, hw, hw), torch.randint(0, 10, (batch,))
    xv, yv = uniform(batch, in_ch, hw, hw), torch.randint(0, 10, (batch,))

    def step():
        a_opt.zero_grad()
        F.cross_entropy(net(xv), yv).backward()
        a_opt.step()
        w_opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        w_opt.step()
    return step


def eval_step(batch=32):
    net = EvalNetwork(DARTS_V2, 36, 10, 20).train()
    opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    x, y = uniform(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        logits, aux = net(x, 0.2)
        loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
    return step


EDGES = {"edge_64x16x32": (64, 16, 32, 1), "edge_64x32x16": (64, 32, 16, 1),
         "edge_64x64x8": (64, 64, 8, 1), "edge_64x16x32_s2": (64, 16, 32, 2)}


def build(case):
    if case.startswith("op_"):
        return single_op(case[3:]), 20
    if case in EDGES:
        return mixed_edge(*EDGES[case]), 10
    if case == "search_darts":
        return search_step(3, 32, 16, 8), 5
    if case == "search_quick":
        return search_step(1, 28, 4, 3), 5
    if case == "eval_darts_v2":
        return eval_step(), 5
    raise SystemExit(f"unknown case {case}")


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: torch_bench.py CASE")
    case = sys.argv[1]
    step, iters = build(case)
    iters = int(os.environ.get("BENCH_ITERS", iters))
    for _ in range(int(os.environ.get("BENCH_WARMUP", "2"))):
        step()
    sync()
    times = []
    for _ in range(max(iters, 1)):
        t = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(json.dumps({
        "side": "torch", "case": case, "median_ms": times[len(times) // 2], "min_ms": times[0],
        "iters": len(times), "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_after_import_mb": RSS_AFTER_IMPORT_MB, "torch": torch.__version__, "device": DEVICE,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if DEVICE.startswith("cuda") else None,
    }))


if __name__ == "__main__":
    main()
