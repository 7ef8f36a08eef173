"""The Streamlit dashboard (not built yet)."""
