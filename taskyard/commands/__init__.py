"""The client verbs of `taskyard`, which talk to a running service over REST through
`taskyard.client` and nothing of the server. Imports go one way, each module only downward:

    taskyard.cli            parses the command line, hands a client verb to `context.run`
    tasks, admin, batches   the verbs: `submit get list watch logs cancel`, `admin ...`,
                            `batch submit get cancel`
    context                 `Context`, `run`, exit codes, the common flags, `show`
    output                  tables, ages, sizes, transition lines, YAML; pure functions
    taskyard.client         the HTTP client

The service verbs (`serve`, `api`, `controller`, `image`, `doctor`) are `taskyard.service` and
`taskyard.doctor`; `.importlinter` keeps them and the server's packages out of here.
"""
