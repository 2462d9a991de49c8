"""`proofup serve`'s gunicorn hooks without gc.freeze() before the fork, for bench/bench_status.py's comparison."""
from app.gunicorn_hooks import child_exit, logconfig_dict, on_starting  # noqa: F401
