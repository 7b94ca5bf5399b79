"""Reading pickled numpy data without running the pickle's code.

``pickle.load`` calls whatever function a file names, so a downloaded ``.pkl`` can run any
command. ``load_arrays`` admits only what a pickled dict of numpy arrays needs: numpy's array,
dtype and scalar reconstruction (under numpy 1's and numpy 2's module names), ``OrderedDict``
and ``_codecs.encode`` (how protocol 2 stores bytes). dicts, lists, tuples, strings, numbers
and bytes are pickle's own opcodes and need no function. Any other name in the file is refused
before anything is called, with one error line naming the file.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

from fewshot_cli.errors import FewshotError


class Refused(pickle.UnpicklingError):
    """The pickle names a global outside the allowed set."""


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The numpy (and standard) functions and types a pickled array needs, by pickled name."""
    import _codecs
    from collections import OrderedDict

    import numpy as np

    # numpy 2 moved numpy.core to numpy._core; files written by either name both.
    core = importlib.import_module("numpy._core" if hasattr(np, "_core") else "numpy.core")
    multiarray, numeric = core.multiarray, core.numeric
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
        ("_codecs", "encode"): _codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):  # protocol 5 arrays (numpy >= 1.16)
            allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``allowed``.

    Args:
        file: a binary file.
        allowed: ``(module, name)`` to the object that name stands for.

    Example:
        >>> import io
        >>> RestrictedUnpickler(io.BytesIO(pickle.dumps({"a": [1]})), {}).load()
        {'a': [1]}
    """

    def __init__(self, file, allowed: dict[tuple[str, str], object]):
        super().__init__(file)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise Refused(f"{module}.{name}") from None


def load_arrays(path: str | Path) -> object:
    """Unpickle a file of numpy arrays and plain containers, refusing anything else.

    Args:
        path: the pickle file.

    Raises:
        FewshotError: the file names another function or type (it is not called), or is no
            readable pickle.

    Example::

        content = load_arrays("mini-imagenet-cache-test.pkl")
        content["image_data"].shape
        # (12000, 84, 84, 3)
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, _numpy_globals()).load()
    except Refused as exc:
        raise FewshotError(
            f"refused to load {path}: it calls {exc}, which a file of numpy arrays never needs "
            "(a pickle can run code: only arrays, numbers, strings, lists and dicts are read)"
        ) from None
    except OSError as exc:
        raise FewshotError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # a damaged pickle fails in many ways
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FewshotError(f"cannot read {path}: not a readable pickle ({reason})") from exc
