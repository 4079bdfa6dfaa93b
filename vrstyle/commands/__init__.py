"""One module per ``vrstyle`` subcommand: ``add_arguments(parser)`` and ``run(args)``."""
