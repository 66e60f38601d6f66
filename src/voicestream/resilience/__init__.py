"""Staying up while the services we call are down: circuit breakers around outside calls."""
