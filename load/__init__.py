"""Locust load profiles and their headless runner."""
