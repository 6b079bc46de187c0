"""Ports: the small Protocols the services need from the world."""
