"""The fleet runtime on RQ: the job functions (an allow-list), the scheduler, the worker, and
single-machine mode (scheduler and worker in one process)."""
