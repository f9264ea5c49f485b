"""The `taskyard` command: wires `api/` and `controller/` together and runs them."""
