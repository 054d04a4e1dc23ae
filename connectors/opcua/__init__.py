"""OPC UA connector: subscriptions (or polling) on an OPC UA server, secure by default.

Kept free of imports so that `gateway.config` can validate node ids without loading asyncua.
"""
