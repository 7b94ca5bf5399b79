"""learn2learn, imported without the notice gym prints on stderr when it is imported.

learn2learn imports gym, which prints a multi-line "unmaintained" notice at import time: noise
for a command-line tool. Modules that use learn2learn import it from here, where it is used (it
costs seconds: gym, scipy, torchvision's models), never at the package's top.

Example::

    from fewshot_cli.l2l import l2l
    transforms = [l2l.data.transforms.LoadData(dataset)]
"""

import contextlib
import io

with contextlib.redirect_stderr(io.StringIO()):
    import learn2learn as l2l

__all__ = ["l2l"]
