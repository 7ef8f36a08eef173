"""The dashboard's entry point for ``streamlit run``: ``tollgate dashboard`` runs
``streamlit run dashboard/app.py -- --project PATH`` (``TOLLGATE_PROJECT`` works too)."""

from dashboard.shell import main

main()
