"""The `duetime` command line for people and scripts (typer + rich): jobs, runs, keys, the stack."""
