"""PyTorch speed reference: the same ANML meta-step, written as a PyTorch user
would, for ``bench/meta_step.py --torch``. Benchmark only (needs
``bench/requirements-bench.txt``); the package and its tests never import it.

Same sizes and work per meta-step as ``anml_jax.steps.make_meta_train_step``:
NM (3 conv 3x3 + instance norm + ReLU, pools after blocks 1-2, linear to the
gate) and PLN (same trunk, gated features, linear head); 20 inner SGD steps of
one image on the PLN with ``create_graph=True`` (second order) or without
(first order); NM gates computed once for the trajectory; meta-loss on 64 random
images plus the 20 trajectory-class drawings; Adam on all parameters. Tasks are
sampled on the device with torch's generator; there is no host sync inside a
step.
"""
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


class Trunk(nn.Module):
  """(B, 3, 28, 28) -> (B, 9 * channels)."""

  def __init__(self, channels):
    super().__init__()
    self.convs = nn.ModuleList([nn.Conv2d(3 if i == 0 else channels, channels, 3)
                                for i in range(3)])
    self.norms = nn.ModuleList([nn.InstanceNorm2d(channels, affine=True)
                                for _ in range(3)])
    for conv in self.convs:
      nn.init.kaiming_normal_(conv.weight)
      nn.init.zeros_(conv.bias)

  def forward(self, x):
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      x = F.relu(norm(conv(x)))
      if i < 2:
        x = F.max_pool2d(x, 2)
    return x.flatten(1)


class ANML(nn.Module):
  def __init__(self, nm_channels=112, pln_channels=256, num_outputs=1000):
    super().__init__()
    self.nm = Trunk(nm_channels)
    self.to_gate = nn.Linear(9 * nm_channels, 9 * pln_channels)
    self.pln = Trunk(pln_channels)
    self.head = nn.Linear(9 * pln_channels, num_outputs)
    for lin in (self.to_gate, self.head):
      nn.init.kaiming_normal_(lin.weight)
      nn.init.zeros_(lin.bias)

  def gate(self, x):
    """(B, 3, 28, 28) -> (B, 9 * pln_channels) in (0, 1)."""
    return torch.sigmoid(self.to_gate(self.nm(x)))

  def forward(self, x, gate):
    """The gated PLN: (B, 3, 28, 28), (B, D) -> (B, num_outputs) logits."""
    return self.head(self.pln(x) * gate)


def make_step(model, opt, images, *, traj_len=20, remember=64, inner_lr=0.1,
              first_order=False):
  """Returns ``step()``: one meta-step on tasks sampled from ``images``
  (C, 20, 3, 28, 28) on the model's device."""
  num_classes, drawings = images.shape[:2]
  pln_names = [n for n, _ in model.named_parameters() if n.startswith(("pln.", "head."))]
  flat_images = images.flatten(0, 1)

  def step():
    c = torch.randint(num_classes, (1,), device=images.device)
    order = torch.randperm(drawings, device=images.device)[:traj_len]
    x_traj = images[c, order]
    y_traj = c.expand(traj_len)
    idx = torch.randperm(num_classes * drawings, device=images.device)[:remember]
    again = torch.randperm(drawings, device=images.device)[:traj_len]
    x_rem = torch.cat([flat_images[idx], images[c, again]])
    y_rem = torch.cat([idx // drawings, y_traj])
    with torch.no_grad():                         # reset_classifer(c), as the original
      row = torch.empty(1, model.head.weight.shape[1], device=images.device)
      nn.init.kaiming_normal_(row)
      model.head.weight.index_copy_(0, c, row)

    params = dict(model.named_parameters())
    gates = model.gate(torch.cat([x_traj, x_rem]))
    g_traj, g_rem = gates[:traj_len], gates[traj_len:]
    fast = {n: params[n] for n in pln_names}
    for i in range(traj_len):
      logits = functional_call(model, {**params, **fast},
                               (x_traj[i:i + 1], g_traj[i:i + 1]))
      loss = F.cross_entropy(logits, y_traj[i:i + 1])
      grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
      fast = {n: w - inner_lr * g for (n, w), g in zip(fast.items(), grads)}
    logits = functional_call(model, {**params, **fast}, (x_rem, g_rem))
    meta_loss = F.cross_entropy(logits, y_rem)
    opt.zero_grad(set_to_none=True)
    meta_loss.backward()
    opt.step()
    return meta_loss.detach()

  return step


def time_meta_step(steps=5, warmup=2, device="cpu", first_order=False,
                   num_train_classes=963, threads=None):
  """Seconds per meta-step (best of ``steps`` single-step timings after
  ``warmup`` steps) of the paper's sizes on ``device``."""
  if threads:
    torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = ANML().to(device)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  images = torch.randn(num_train_classes, 20, 1, 28, 28, device=device).expand(
      -1, -1, 3, -1, -1).contiguous()
  step = make_step(model, opt, images, first_order=first_order)
  sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
  for _ in range(warmup):
    step()
  sync()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    loss = step()
    sync()
    times.append(time.perf_counter() - t0)
  return {"s_per_step": min(times), "s_per_step_median": sorted(times)[len(times) // 2],
          "final_loss": float(loss), "torch": torch.__version__,
          "threads": torch.get_num_threads(), "device": device,
          "first_order": first_order}
