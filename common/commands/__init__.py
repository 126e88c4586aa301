"""The ``nin`` subcommands, one module each: ``add_parser(subparsers)`` registers it, ``run(args)`` runs it."""
