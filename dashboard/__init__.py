"""The Streamlit dashboard: release decision, QA failures, overfitting, beta feedback, runs.

``tollgate dashboard`` starts it (``dashboard.cli``); ``dashboard.app`` is the script Streamlit runs,
``dashboard.shell`` the navigation and login around the pages, one module per page (``release``,
``failures``, ``overfitting``, ``beta``, ``runs``). Pages read through ``harness.queries`` and
``rollout.queries`` (``dashboard.context`` caches the reads) and change state only through
``dashboard.actions``, which checks ``dashboard.auth`` on the server.
"""
