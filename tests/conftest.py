"""Test-wide settings: small tensors run fastest (and deterministically) on one thread."""

import torch

torch.set_num_threads(1)
