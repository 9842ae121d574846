T25 = str(ROOT / "teacher_f0.25_e20" / "checkpoint.pth")
KD = dict(distillation_alpha=0.7, distillation_tau=3.0, distillation_kl_reduction="batchmean")
run(
    [
        teacher(1.0, 8),
        student("none", 0.25, 40, 0),
        student("soft", 0.25, 40, 0, T25, **KD),
        student("none", 0.25, 40, 0, tag="_mix", **MIX),
        student("soft", 0.25, 40, 0, T25, tag="_mix", **KD, **MIX),
    ]
)
T = str(ROOT / "teacher_f1.0_e8" / "checkpoint.pth")
run([student("none", 1.0, 12, 0), student("soft", 1.0, 12, 0, T, **KD)])
