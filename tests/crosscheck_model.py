"""A user's own PyTorch model, as tools/crosscheck.py takes it: a file with a function that
builds the module (`--file tests/crosscheck_model.py --function build`). A small image
classifier written the way people write them: a stem, a residual block with batch norm, SiLU and
functional ops, global average pooling and a linear head; random weights from a fixed seed, the
batch norm's running statistics made non-trivial so that eval mode is not the identity."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = F.silu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class TinyClassifier(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.block = ResidualBlock(12)
        self.head = nn.Linear(12, classes)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(F.dropout(x, 0.2, self.training))


def build():
    torch.manual_seed(3)
    model = TinyClassifier()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
    return model
