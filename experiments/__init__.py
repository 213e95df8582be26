"""experiments: the PsychoPy noticeability experiment and its screen-free trial engine.

Only ``session.py``, ``window.py``, ``pixel_image.py``, ``check_screen.py`` and ``participant_form.py``
(``psychopy.gui``) import PsychoPy's window, keyboard and dialog parts, inside functions;
``psychopy_monitors.py`` its monitor files.
"""
