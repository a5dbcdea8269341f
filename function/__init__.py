"""The Cloud Function: its entry point (`main.py`), the serving code and the model shipped with it."""
