"""The hub side of ec2hub: settings, authentication and the JupyterHub configuration built from them."""
