"""CUDA kernels for the recurrence (CuPy RawKernels from the .cu files beside this module).

Only :mod:`rnn_xp.cuda.recurrence` launches them; the functional core never imports CuPy.
"""
