"""The demo's student kinds: their order in tables and pictures, and how each is titled and named."""

from __future__ import annotations

#: no distillation, the paper's two-class-token control, soft and hard distillation through the dist token
STUDENT_KINDS = ("none", "two_cls_tokens", "soft", "hard")
STUDENT_TITLES = {
    "none": "no distillation (plain DeiT, one class token)",
    "two_cls_tokens": "two class tokens, both on labels (control)",
    "soft": "DeiT⚗ soft distillation",
    "hard": "DeiT⚗ hard distillation",
}
#: How a verdict sentence names a kind.
KIND_NAMES = {
    "two_cls_tokens": "The two-class-token control",
    "soft": "Soft distillation",
    "hard": "Hard distillation",
    "none": "No distillation",
}
