"""Argument types shared by the command modules: numbers checked where they are parsed."""

from __future__ import annotations

import argparse
from typing import Callable


def number(*, integer: bool = False, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], float | int]:
    """An argparse ``type`` for a finite number in a range (eigdist_core.validate.validate_number's rule).

    argparse then names the option: ``argument --seed: must be an int >= 0, got -1``.
    """
    from eigdist_core.errors import EigdistError
    from eigdist_core.validate import validate_number

    def parse(text: str) -> float | int:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an int' if integer else 'a number'}, got {text!r}") from None
        try:
            return validate_number("value", value, integer=integer, low=low, high=high, low_open=low_open)
        except EigdistError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ").removeprefix("value: ")) from None

    return parse
