# Stage 4: width 64 at lr 1e-3 on 25% of the data (stage 3's lr-1e-3 runs at 25% had not run: their folders held
# the stopped 16 px runs), to choose lr 1e-3 or 2e-3 on seed 0 at both sizes.
W64 = {"embed_dim": 64, "depth": 2, "num_heads": 4, "patch_size": 8}
KD = dict(distillation_alpha=0.7, distillation_tau=3.0, distillation_kl_reduction="batchmean")
T25 = str(ROOT / "teacher_f0.25_e32" / "checkpoint.pth")
E4 = dict(eval_interval=4, lr=1e-3)  # base() now has the demo default lr 2e-3
run(
    [
        student("none", 0.25, 64, 0, tag="_w64", student_kw=W64, **E4),
        student("soft", 0.25, 64, 0, T25, tag="_w64", student_kw=W64, **E4, **KD),
    ]
)
