"""Issue 26's findings against ``serve``, each kept as a regression test (F1-F14), and the slow-client soak."""
