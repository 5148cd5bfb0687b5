"""Server-side HTML of the Info Mart Manager page (``plugins/gim_ui.py``); no Airflow imports."""
