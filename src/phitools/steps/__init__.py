"""Pure transforms: Iterable[record] -> Iterable[record]. No typer, no rich, no sys.exit."""
