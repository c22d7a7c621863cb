"""Run a grade's stack without Docker: `python -m coursekit.native run|stop|status|reset|memory`."""
