"""gim-airflow's job logic: plain Python, runnable without Airflow (see DESIGN.md)."""

__version__ = "0.1.0"
