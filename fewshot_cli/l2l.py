"""learn2learn, imported without the notice gym prints on stderr when it is imported.

learn2learn imports gym, which prints a multi-line "unmaintained" notice at import time that a
user of this tool cannot act on. Only that notice is dropped: anything else written to stderr
during the import (warnings included) still reaches it. Modules that use learn2learn import it
from here, where it is used (it costs seconds), never at the package's top.

Example::

    from fewshot_cli.l2l import l2l
    transforms = [l2l.data.transforms.LoadData(dataset)]
"""

import contextlib
import io
import sys

with contextlib.redirect_stderr(io.StringIO()) as _captured:
    import learn2learn as l2l


def _gym_notice() -> str:
    try:
        import gym
        from gym_notices.notices import notices
    except Exception:  # no gym, or no notices: nothing was printed
        return ""
    return notices.get(gym.__version__, "")


_text = _captured.getvalue()
if _gym_notice():
    _text = _text.replace(_gym_notice() + "\n", "")
if _text:
    sys.stderr.write(_text)

__all__ = ["l2l"]
