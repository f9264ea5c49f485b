"""The reconciling controller: it observes containers, places pending tasks onto free slots,
starts hardened containers, enforces deadlines and cancellations, and writes status back.

It never imports `api/`; `taskyard.cli` wires it up.
"""
