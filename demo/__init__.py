"""probewarp.demo: applications built on the library: the ``probewarp`` command line and the flythrough."""
