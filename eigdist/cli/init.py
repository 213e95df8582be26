"""``eigdist init STUDY``: a study folder of the lab's own files to start from.

Writes ``STUDY/stimuli.toml`` (a commented stimulus-set config), ``STUDY/experiment.toml`` (the
shipped experiment defaults, every key commented), ``STUDY/README.md`` (the workflow, with this
user's monitor folder) and an empty ``STUDY/images/``. Never overwrites: if any of the files
exists, nothing is written.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from string import Template

from eigdist_core.errors import EigdistError

#: The files ``eigdist init`` writes, in the study folder.
FILES = ("stimuli.toml", "experiment.toml", "README.md")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="start a study folder: stimulus-set and experiment configs, a workflow README")
    p.add_argument("study", help="the study's folder (created; its name becomes the stimulus set's name)")
    p.set_defaults(func=run)


def study_files(study: Path) -> dict[str, str]:
    """The text of each file of a new study folder ``study``."""
    from eigdist_core import __version__
    from eigdist_core.stimulus_set import safe_name
    from experiments.monitor import monitors_dir

    values = {"study": study.resolve().name, "name": safe_name(study.resolve().name), "version": __version__,
              "monitors": str(monitors_dir())}
    templates = resources.files("eigdist") / "templates"
    experiment = (resources.files("experiments") / "noticeability.toml").read_text(encoding="utf-8")
    return {
        "stimuli.toml": Template((templates / "stimuli.toml").read_text(encoding="utf-8")).substitute(values),
        "experiment.toml": f"# The experiment of the study \"{values['study']}\", started from eigdist "
                           f"{__version__}'s defaults.\n# Use it with: eigdist run --config experiment.toml ...\n\n"
                           + experiment,
        "README.md": Template((templates / "README.md").read_text(encoding="utf-8")).substitute(values),
    }


def run(args: argparse.Namespace) -> int:
    from eigdist_core.io import atomic_write_bytes, check_output_folder

    if not args.study.strip():  # an unset shell variable ($STUDY): not the current folder
        raise EigdistError(f"the study's folder name is empty ({args.study!r}, an unset shell variable?); "
                           "give a name, e.g. eigdist init my-study")
    study = Path(args.study)
    if study.exists() and not study.is_dir():
        raise EigdistError(f"{study} exists and is not a folder: choose a new name for the study's folder")
    check_output_folder(study, "the study folder")
    existing = [name for name in FILES if (study / name).exists()]
    if existing:
        raise EigdistError(f"{study} already holds {', '.join(existing)}: eigdist init never overwrites a study's "
                           f"files; choose a new folder (or move those files away)")
    files = study_files(study)
    (study / "images").mkdir(parents=True, exist_ok=True)
    for name in FILES:
        atomic_write_bytes(study / name, files[name].encode("utf-8"))
    print(f"wrote {', '.join(str(study / name) for name in FILES)} and {study / 'images'}/")
    print(f"next: follow {study / 'README.md'}")
    return 0
