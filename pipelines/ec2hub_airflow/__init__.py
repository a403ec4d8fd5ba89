"""ec2hub's Airflow provider: DAG tasks that run notebooks as ec2hub jobs and callables on Dask clusters
of the hub's dask-gateway, as the user whose hub token the `ec2hub` connection holds.

Airflow finds this provider through the `apache_airflow_provider` entry point (`get_provider_info`),
which registers the `ec2hub` connection type and its form in Airflow's UI.
"""

from __future__ import annotations

__version__ = "0.1.0"

CONNECTION_TYPE = "ec2hub"


def get_provider_info() -> dict:
    """What Airflow's providers manager reads: the connection type, its hook, and the modules."""
    integration = "ec2hub"
    return {
        "package-name": "ec2hub-airflow",
        "name": "ec2hub",
        "description": "Notebooks as ec2hub jobs and callables on Dask clusters of an ec2hub hub.",
        "integrations": [{"integration-name": integration, "tags": ["service"]}],
        "hooks": [
            {
                "integration-name": integration,
                "python-modules": ["ec2hub_airflow.hooks", "ec2hub_airflow.gateway"],
            }
        ],
        "operators": [
            {
                "integration-name": integration,
                "python-modules": ["ec2hub_airflow.operators", "ec2hub_airflow.gateway"],
            }
        ],
        "triggers": [{"integration-name": integration, "python-modules": ["ec2hub_airflow.triggers"]}],
        "connection-types": [
            {
                "connection-type": CONNECTION_TYPE,
                "hook-class-name": "ec2hub_airflow.hooks.Ec2hubHook",
                "hook-name": "ec2hub",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "Hub URL", "password": "Hub API token"},
                    "placeholders": {
                        "host": "https://hub.example.org",
                        "password": "a token of the pipeline's owner (jobs and dask-gateway services)",
                    },
                },
                "conn-fields": {
                    "gateway_address": {
                        "label": "dask-gateway address",
                        "description": "The hub's dask-gateway, as DASK_GATEWAY__ADDRESS in a user's server.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "gateway_proxy_address": {
                        "label": "dask-gateway proxy address",
                        "description": "Its schedulers' proxy (DASK_GATEWAY__PROXY_ADDRESS), gateway://host:port.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }
