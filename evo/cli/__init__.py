"""`evoc`: the command line, apart from the library.  Exit 0 ok, 1 program errors, 2 usage errors.

Layout: `app` (parser, subcommand registry, `main`), `common` (exit codes, `UsageError`,
reading a program, `pick`), `output` (the one atomic writer), `progress` (tqdm bars) and
one module per subcommand (`check`, `fmt`, `compile`, `run`, `cost`, `evolve`,
`importer`).  Nothing outside `evo.cli` imports it.
"""

from evo.cli.app import SUBCOMMANDS, SubcommandError, build_parser, load_subcommands, main
from evo.cli.common import EXIT_INTERNAL, EXIT_OK, EXIT_PROGRAM, EXIT_USAGE, UsageError

__all__ = ["EXIT_INTERNAL", "EXIT_OK", "EXIT_PROGRAM", "EXIT_USAGE", "SUBCOMMANDS", "SubcommandError",
           "UsageError", "build_parser", "load_subcommands", "main"]
