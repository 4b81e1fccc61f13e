"""Command line: `python -m int8compile demo | build | targets`."""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="int8compile", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train MNIST models, compile with backend='int8', compare accuracy")
    demo.add_argument("--model", choices=["convnet", "mlp", "both"], default="both")
    demo.add_argument("--epochs", type=int, default=4)
    demo.add_argument("--requant", choices=["float", "fixed", "pot"], default="float")
    sub.add_parser("build", help="build (and cache) the C++/CUDA kernels now instead of on first use")
    sub.add_parser("targets", help="list kernel targets and whether they can run here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")

    if args.command == "demo":
        from . import demo as demo_module
        for name in (["mlp", "convnet"] if args.model == "both" else [args.model]):
            demo_module.run(name, epochs=args.epochs, requant=args.requant)
        return 0
    if args.command in ("build", "targets"):
        return _targets(build=args.command == "build")
    return 1


def _targets(build: bool) -> int:
    """One line per kernel module: its targets and whether they can run here."""
    import sys as _sys

    from .kernels import registry
    ok = True
    for module_name, names in registry.target_modules().items():
        prebuild = getattr(_sys.modules[module_name], "prebuild", None)
        label = ", ".join(names)
        if prebuild is None:
            print(f"{label:20s} ready (pure PyTorch / inductor)")
            continue
        try:
            print(f"{label:20s} {prebuild() if build else 'builds on first use'}")
        except Exception as e:                  # report every target, then fail
            ok = False
            print(f"{label:20s} unavailable: {e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
