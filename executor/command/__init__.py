"""The command executor: runs command and steps targets in a bubblewrap sandbox (ADR 0026).

Its own service process (never the webhook executor's): a tenant's code runs beside nothing
that holds another tenant's data or the stack's credentials.
"""
