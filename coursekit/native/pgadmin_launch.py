"""Start pgAdmin 4 with the course's servers registered. Runs in pgAdmin's OWN virtualenv.

    .venv-pgadmin/bin/python pgadmin_launch.py <servers.json>

`make run` (coursekit/native/pgadmin.py) calls it with a servers.json whose hosts, ports and
passfile are already rewritten for this machine, and with PYTHONPATH pointing at a folder that
holds pgAdmin's config_local.py (desktop mode, data dir, port). It must not import coursekit:
that lives in the other virtualenv.

Why not `setup.py load-servers` and then `pgAdmin4.py`: that loads pgAdmin twice (~3 s more per
start), and load-servers only ever adds, so a second run would list every server twice. Here the
course's servers are upserted by group and name on every start: a moved port (PG_DWH_PORT=...)
reaches pgAdmin, and servers a learner added by hand are left alone.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig

SERVER_FIELDS = {  # servers.json key -> pgAdmin's Server column
    "Host": "host",
    "Port": "port",
    "MaintenanceDB": "maintenance_db",
    "Username": "username",
    "Comment": "comment",
    "ConnectionParameters": "connection_params",
}


def register_servers(servers_file: str, user_email: str) -> None:
    """Update the course's servers in place (keeping their ids), add the missing ones."""
    from pgadmin.model import Server, ServerGroup, User, db
    from pgadmin.utils import load_database_servers

    with open(servers_file, encoding="utf-8") as f:
        servers = json.load(f)["Servers"]
    user = User.query.filter_by(email=user_email).first()
    missing = []
    for key, wanted in servers.items():
        group = ServerGroup.query.filter_by(user_id=user.id, name=wanted["Group"]).first()
        server = group and Server.query.filter_by(user_id=user.id, servergroup_id=group.id, name=wanted["Name"]).first()
        if not server:
            missing.append(key)
            continue
        for field, column in SERVER_FIELDS.items():
            if field in wanted:
                setattr(server, column, wanted[field])
    db.session.commit()
    if missing:
        load_database_servers(servers_file, missing, user_email, True)
    print(f"pgadmin_launch: {len(servers) - len(missing)} server(s) updated, {len(missing)} added", flush=True)


def main() -> None:
    pgadmin_dir = os.path.join(sysconfig.get_paths()["purelib"], "pgadmin4")
    sys.path.insert(0, pgadmin_dir)
    os.chdir(pgadmin_dir)
    import config
    import pgAdmin4  # builds the app; creates its SQLite settings database on the first start

    with pgAdmin4.app.test_request_context():
        register_servers(sys.argv[1], config.DESKTOP_USER)
    pgAdmin4.main()


if __name__ == "__main__":
    main()
