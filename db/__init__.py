"""PostgreSQL: models, migrations and the queries the processes run. Imports no process."""
