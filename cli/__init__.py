"""`ess`, the platform's command-line tool: `client` speaks the REST API and the gateway, `config`
keeps the login, `output` renders answers and errors, `main` and `data` are the commands."""
