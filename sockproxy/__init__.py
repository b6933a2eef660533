"""sockproxy: a policy-enforcing proxy for the Docker and Podman API sockets."""

__version__ = "0.1.0"
