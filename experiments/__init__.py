"""experiments: the PsychoPy noticeability experiment and its screen-free trial engine.

Only ``session.py`` and ``display.py`` import PsychoPy's display parts.
"""
