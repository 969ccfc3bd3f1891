"""What the benchmarks share, in one place each.

`measure`: progress lines, peak RSS and CPU time, machine description, medians and tables.
`processes`: child processes (marked results, logs, SIGKILL and reaping, SIGTERM as Ctrl-C).
`databases`: scratch SQLite files and scratch PostgreSQL databases, and the work directory.
`opportunity_changes`: the sandbox org's opportunities changed through sObject Collections.
"""
