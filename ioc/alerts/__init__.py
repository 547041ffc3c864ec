"""Alert records, their queries and silences, the webhook outbox and its delivery log.

They live in ``ioc``, not ``alerting``, because the core writes them in its own transactions:
ticket actions and the dossier fold resolve alerts, and the alert engine in ``alerting`` raises
them through the same functions. ``alerting`` holds the rules that decide when to raise.
"""
