"""A quiet console by default: the project's own lines, not the libraries' noise.

Without it a newcomer's terminal fills with hundreds of lines nobody needs to act on:
``DeprecationWarning``s of spaCy, click, TensorFlow, SQLAlchemy, pkg_resources ... and
Rasa's data checks that do not apply to this project. ``PYTHONWARNINGS`` (exported by
the Makefile) is not enough: Sanic puts ``filterwarnings("once", DeprecationWarning)``
in front of all filters when it is imported, and Rasa's command line adds its own
filters when it starts, so the environment's filters no longer decide.

:func:`install` therefore puts our filters in front and keeps them there: after every
later ``warnings.filterwarnings``/``simplefilter``/``resetwarnings`` call of a library
they are moved back to the front. Hidden:

* ``DeprecationWarning`` and ``PendingDeprecationWarning`` (library internals; they
  matter when a library is upgraded, and ``VERBOSE=1`` shows them then);
* Rasa's "utterance/action ... is not used in any story or rule": in this project the
  custom actions send the responses, not only stories and rules;
* Rasa's "intent ... is listed in the domain file, but is not found in the NLU training
  data" for the intents nobody types: ``EXTERNAL_*`` (sent by the desk) and
  ``non_text_message`` (set by the WhatsApp channel for images, voice notes ...);
* TensorFlow's C++ log lines (``TF_CPP_MIN_LOG_LEVEL=2``), SQLAlchemy's 2.0 notice and
  rasa_sdk's line per registered action.

``VERBOSE=1`` (``VERBOSE=1 make run``) switches all of this off. Errors, and warnings
of other kinds, are always shown. Use :func:`install` at the start of a command line
entry point, before the libraries are imported; ``python -m appcare.ops.quiet rasa ...``
runs Rasa's command line this way.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from typing import List, Optional

ENV_VERBOSE = "VERBOSE"
# (category, regular expression the message must match at its start)
HIDDEN = (
    (DeprecationWarning, ""),
    (PendingDeprecationWarning, ""),
    (UserWarning, r"The (utterance|action) '[^']*' is not used in any story or rule"),
    (UserWarning, r"The intent '(EXTERNAL_\w+|non_text_message)' is (listed in the domain file, but is not found "
                  r"in the NLU training data|not used in any story or rule)"),
)
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "SQLALCHEMY_SILENCE_UBER_WARNING": "1"}
QUIET_LOGGERS = {"rasa_sdk.executor": logging.WARNING}  # "Registered function for 'action_...'" x 20

_original = {"filterwarnings": warnings.filterwarnings, "simplefilter": warnings.simplefilter,
             "resetwarnings": warnings.resetwarnings}
_installed = False


def verbose() -> bool:
    """True when VERBOSE is set to anything but 0/no/false/off."""
    return os.environ.get(ENV_VERBOSE, "").strip().lower() not in ("", "0", "no", "false", "off")


def _put_ours_in_front() -> None:
    for category, message in reversed(HIDDEN):
        _original["filterwarnings"]("ignore", message=message, category=category)


def _keeping_ours_in_front(function):  # noqa: ANN001, ANN202
    @functools.wraps(function)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = function(*args, **kwargs)
        _put_ours_in_front()
        return result

    return wrapper


def install() -> bool:
    """Hides the library noise in this process (and in the libraries' C++ parts it
    loads later); no-op with VERBOSE=1. Returns whether it is active."""
    global _installed
    if verbose():
        return False
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    if not _installed:
        warnings.filterwarnings = _keeping_ours_in_front(_original["filterwarnings"])
        warnings.simplefilter = _keeping_ours_in_front(_original["simplefilter"])
        warnings.resetwarnings = _keeping_ours_in_front(_original["resetwarnings"])
        _installed = True
    _put_ours_in_front()
    return True


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m appcare.ops.quiet rasa <arguments>``: Rasa's command line, quietly."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "rasa":
        print("usage: python -m appcare.ops.quiet rasa <arguments of the rasa command>", file=sys.stderr)
        return 2
    install()
    from rasa.__main__ import main as rasa_main

    sys.argv = args
    try:
        rasa_main()
    except SystemExit as stop:
        code = stop.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
