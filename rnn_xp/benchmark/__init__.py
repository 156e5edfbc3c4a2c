"""Benchmark machinery shared by ``rnn-xp bench`` and the scripts in ``bench/``: cases, peers, timing, results."""
