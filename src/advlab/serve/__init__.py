"""The label-only prediction API (``advlab serve``) and its client."""

from advlab.serve.app import QueryStats, ServeConfig, create_app
from advlab.serve.client import HTTPOracle, OracleError
from advlab.serve.server import BackgroundServer, bind_loopback, check_loopback, serve_forever

__all__ = ["ServeConfig", "QueryStats", "create_app", "HTTPOracle", "OracleError", "BackgroundServer",
           "bind_loopback", "check_loopback", "serve_forever"]
