"""One module per `deit` subcommand: its arguments and a call into the library, nothing else."""
