"""The local cloud: moto over HTTP with IAM enforcement, and a runtime that boots instances as processes."""
