"""Notifications: rendering of notification effects from templates, and delivery."""
