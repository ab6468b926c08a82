"""Reading the alert database: the filters the CLI and the page share, and the summaries the
page draws (:mod:`netanomd.store.read`). Writing stays the SQLite sink's."""
