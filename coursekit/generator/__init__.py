"""The shop generator: the backend database of a shop selling exotic fruits.

Every grade of the course loads data *from* a shop database into a warehouse.
This package is what fills that shop database: on each tick it deletes old rows,
updates recent ones and inserts new ones, in one transaction, reproducibly from
a seed. One copy serves all five grades; a grade only supplies its
`docker/generator/config.json` (which tables and columns) and its
`deploy/env/shop-N.env` (seed, locale, timing, where the database is).

Run it with `python -m coursekit.generator --help` (or the `shop-generator`
console script). The modules, in the order a tick uses them:

* `settings` - the environment variables, parsed strictly;
* `sqltypes` - the SQL column types a config may use;
* `config`   - config.json, validated before anything touches a database;
* `values`   - fast, seeded value generation from Faker providers;
* `db`       - DDL and the SQL of one tick;
* `shop`     - one tick: delete, update, insert, in one transaction;
* `logs`     - console, info.log and debug.log;
* `__main__` - the command line, the tick loop, retries and signals.

Nothing here imports Airflow, pandas or `coursekit.pg`: the Docker image of the
generator contains only this package, `coursekit/__init__.py` and
`coursekit/envfiles.py`.
"""
