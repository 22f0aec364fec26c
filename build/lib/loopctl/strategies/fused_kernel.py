"""BoTorch's fused C++ kernel for log-EHVI: built once at install time, never at run time.

BoTorch (0.18) JIT-compiles this kernel the first time a process builds a
log-EHVI acquisition function: about 47 s on two cores, under a lock file in
``~/.cache/torch_extensions``. A controller killed during that build (a crash, a
SIGKILL from a supervisor, a test's timeout) leaves the lock behind, and every
later multi-objective proposal on the machine then waits on it forever. So
``make install`` builds the kernel into the virtual environment as an ordinary
extension module (``python -m loopctl.strategies.fused_kernel``), BoTorch imports
it from there, and :func:`no_jit` makes sure no loopctl process ever starts a
compiler: without the built module, EHVI runs BoTorch's pure-Python path
(same values, 1.5-3.5x slower in its inner loop).
"""

from __future__ import annotations

import importlib
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

MODULE = "logei_fused_ext"  # the name BoTorch imports before it falls back to compiling


def no_jit() -> bool:
    """Load the prebuilt kernel if there is one, and stop BoTorch compiling it; True if loaded."""
    try:
        from botorch.acquisition.multi_objective import logei
    except ImportError:  # pragma: no cover - botorch always installed with the model strategies
        return False
    if not hasattr(logei, "_load_attempted"):  # an older or newer BoTorch without the JIT path
        return False
    if not logei._load_attempted:
        logei._load_attempted = True
        try:
            logei._C = importlib.import_module(MODULE)  # type: ignore[assignment]
        except ImportError:
            logei._C = None
    return logei._C is not None


def build() -> Path:
    """Compile the kernel from BoTorch's own source and install it next to BoTorch."""
    import botorch
    from torch.utils.cpp_extension import load

    source = Path(botorch.__file__).parent / "csrc" / "logei_fused.cpp"
    if not source.exists():
        raise FileNotFoundError(f"{source}: this BoTorch has no fused kernel to build")
    with tempfile.TemporaryDirectory(prefix="loopctl-fused-") as tmp:
        module = load(
            name=MODULE,
            sources=[str(source)],
            extra_cflags=["-O3", "-march=native"],
            build_directory=tmp,
            verbose=False,
        )
        target = Path(sysconfig.get_paths()["platlib"]) / Path(module.__file__ or "").name
        shutil.copy2(module.__file__ or "", target)
    return target


def main() -> int:
    try:
        target = build()
    except Exception as exc:  # a missing compiler costs speed, not correctness
        print(
            f"fused log-EHVI kernel not built ({type(exc).__name__}: {exc}); "
            "multi-objective proposals use BoTorch's pure-Python path",
            file=sys.stderr,
        )
        return 0
    print(f"fused log-EHVI kernel: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
