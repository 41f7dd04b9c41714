"""probewarp.cli: the ``probewarp`` command line (parses arguments, calls the library, prints)."""
