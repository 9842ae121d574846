run([teacher(0.1, 40), teacher(0.25, 20)])
T = str(ROOT / "teacher_f0.1_e40" / "checkpoint.pth")
KD = dict(distillation_alpha=0.7, distillation_tau=3.0, distillation_kl_reduction="batchmean")
specs = []
for seed in (0, 1):
    specs += [
        student("none", 0.1, 40, seed),
        student("soft", 0.1, 40, seed, T, **KD),
        student("none", 0.1, 40, seed, tag="_mix", **MIX),
        student("soft", 0.1, 40, seed, T, tag="_mix", **KD, **MIX),
        student("hard", 0.1, 40, seed, T),
        student("hard", 0.1, 40, seed, T, tag="_mix", **MIX),
    ]
run(specs)
