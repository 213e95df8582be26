"""``eigdist power``: how many observers and trials a lab needs."""

from __future__ import annotations

import argparse

from .options import number


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("power", help="plan observers and trials by simulation")
    p.add_argument("--delta-d", type=number(low=0, low_open=True), required=True, help="difference of D to detect (log10 units)")
    p.add_argument("--observers", type=_ints, default=[4, 6, 8, 12], help="participants per lab, e.g. 4,6,8")
    p.add_argument("--trials", type=_ints, default=[40, 60], help="trials per condition, e.g. 40,60")
    p.add_argument("--images", type=number(integer=True, low=1), default=6, help="images per lab (default 6)")
    p.add_argument("--labs", type=number(integer=True, low=1), default=100, help="simulated labs per design (default 100)")
    p.add_argument("--d-low", type=number(), default=0.3, help="true D of the weaker layer (default 0.3)")
    p.add_argument("--sd-participant", type=number(low=0), default=0.1, help="log10 SD of participants' sensitivity")
    p.add_argument("--sd-image", type=number(low=0), default=0.1, help="log10 SD of images' visibility")
    p.add_argument("--sd-d", type=number(low=0), default=0.1, help="log10 SD of D across participant × image")
    p.add_argument("--method", default="constant", choices=["constant", "quest", "updown"],
                   help="how trials are drawn (quest/updown: the experiment's tracks; slower)")
    p.add_argument("--n-boot", type=number(integer=True, low=1), default=200, help="bootstrap draws per lab (default 200)")
    p.add_argument("--seed", type=number(integer=True, low=0), default=0)
    p.add_argument("--out", help="folder for power.csv and power.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from analysis.power import power_table
    from analysis.report import power_figure, save_figure, save_table
    from analysis.simulate import LabSpread
    from eigdist_core.io import check_output_folder
    from experiments.staircase import make_track

    if args.out:
        check_output_folder(args.out, "--out")  # before the simulation, not after it
    table = power_table(args.delta_d, args.observers, args.trials, n_images=args.images, n_labs=args.labs,
                        d_low=args.d_low, method=args.method, n_boot=args.n_boot, seed=args.seed,
                        spread=LabSpread(args.sd_participant, args.sd_image, args.sd_d), make_track=make_track)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        out = Path(args.out)
        save_table(table, out / "power.csv")
        save_figure(power_figure(table), out / "power.png")
        print(f"wrote {out}/power.csv and {out}/power.png")
    return 0
