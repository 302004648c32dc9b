"""Running approved requests: the executors that act on targets, the execution steps (one
transaction each) and the Celery tasks that string them together."""
