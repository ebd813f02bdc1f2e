"""``biomedclip demo``: every stage on a synthetic PMC-style corpus, one after another.

:mod:`biomedclip.demo.run` holds the steps (library calls, no CLI), :mod:`biomedclip.demo.cli`
the command that the top-level ``biomedclip.cli`` registers.
"""

from biomedclip.demo.run import DEMO_MARKER, DemoConfig, run_demo

__all__ = ["DEMO_MARKER", "DemoConfig", "run_demo"]
