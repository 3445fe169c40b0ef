"""The offscreen OpenGL backend for MuJoCo rendering (evaluation and replay videos), chosen explicitly.

Entry points call :func:`choose_offscreen_gl` before ``mujoco`` is first imported: MuJoCo reads
``MUJOCO_GL`` at import, and with ``MUJOCO_GL=egl`` but no libEGL, ``import mujoco`` itself fails
(an AttributeError from PyOpenGL), so the simulator could not even start.
"""


import ctypes
import os
import sys

_OFFSCREEN_GL = {"egl": ("libEGL.so.1", "libEGL.so"), "osmesa": ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so")}


def _loads(backend: str) -> bool:
    for library in _OFFSCREEN_GL[backend]:
        try:
            ctypes.CDLL(library)
            return True
        except OSError:
            continue
    return False


def choose_offscreen_gl() -> str | None:
    """MUJOCO_GL: the user's choice where its library loads (or one trot does not check, e.g. glfw),
    else egl, else osmesa; None where neither loads (simulation works, rendering says why not)."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen not in _OFFSCREEN_GL and chosen:
        return chosen
    if chosen and _loads(chosen):
        return chosen
    fallback = next((backend for backend in _OFFSCREEN_GL if backend != chosen and _loads(backend)), None)
    if chosen:
        print(f"trot: MUJOCO_GL={chosen}, but its library ({_OFFSCREEN_GL[chosen][0]}) cannot be loaded: "
              f"{f'using {fallback}' if fallback else 'no offscreen rendering (videos are skipped)'}",
              file=sys.stderr)  # fmt: skip
    if fallback:
        os.environ["MUJOCO_GL"] = fallback
    else:
        os.environ.pop("MUJOCO_GL", None)
    return fallback

