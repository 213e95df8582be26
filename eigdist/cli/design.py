"""``eigdist design select``: choose a test set from a pool, before any observer sits down."""

from __future__ import annotations

import argparse

from .options import number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("design", help="choose the stimuli that tell the layers apart")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser("select", help="pick items and trials per item from a pool (a set with sensitivities)")
    s.add_argument("pool", help="the pool: a built stimulus set with its sensitivity table")
    s.add_argument("--budget-trials", type=number(integer=True, low=1), required=True, help="trials in all")
    s.add_argument("--out", required=True, help="new folder for the subset (a stimulus set)")
    s.add_argument("--step", type=number(integer=True, low=1), default=10, help="trials per allocation step (default 10)")
    s.add_argument("--item-cap", type=number(integer=True, low=1), default=60, help="most trials per item (default 60)")
    s.add_argument("--image-cap", type=number(integer=True, low=1), default=240,
                   help="most trials per image (default 240)")
    s.add_argument("--per-image", type=number(integer=True, low=2), default=2,
                   help="fewest directions per image shown (default 2)")
    s.add_argument("--alternatives", type=number(integer=True, low=2, high=3), default=2,
                   help="alternatives of the task (guess rate 1/n; default 2)")
    s.add_argument("--slope", type=number(low=0, low_open=True), help="Weibull slope β (default: the fits' prior median, 3)")
    s.add_argument("--lapse", type=number(low=0, high=0.5), help="lapse rate (default 0.02)")
    s.add_argument("--typical-threshold", type=number(low=0, low_open=True),
                   help="each layer's median predicted threshold (default alpha_max · 10^-1.5)")
    s.add_argument("--bits", type=number(integer=True, low=1), default=8, help="bits per channel of the display (default 8)")
    s.set_defaults(func=select)


def select(args: argparse.Namespace) -> int:
    from analysis.design_selection import DEFAULT_LAPSE, DEFAULT_SLOPE, Observer, select_subset
    from eigdist_core.design_criterion import Constraints

    limits = Constraints(args.budget_trials, args.step, args.item_cap, args.image_cap, args.per_image)
    observer = Observer(slope=args.slope or DEFAULT_SLOPE, lapse=DEFAULT_LAPSE if args.lapse is None else args.lapse,
                        n_alternatives=args.alternatives, typical_threshold=args.typical_threshold, bits=args.bits)
    subset, selection = select_subset(args.pool, args.out, limits, observer)
    worst = max(selection["bounds"], key=selection["bounds"].get)
    print(f"{args.out}: set {subset.set_id} from {subset.manifest['parent']['set_id']}: {len(subset.items)} items of "
          f"{len(subset.images)} images, {sum(selection['trials'].values())} trials; criterion {selection['value']:.3g} "
          f"(bound on naming a wrong layer; worst true layer {worst}); {len(selection['excluded'])} item(s) left "
          f"out (reasons in manifest.json selection.excluded)")
    return 0
