"""``python -m que_core.cli`` is ``que``."""

from que_core.cli import main

main(prog_name="que")
