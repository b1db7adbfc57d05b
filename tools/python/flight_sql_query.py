"""Runs SQL statements against a Flight SQL server with the ADBC Flight SQL driver and
prints every result as JSON: {"results": [[row objects], ...]}. Used by the Flight SQL test
(src/tests/flight.rs); any failure exits non-zero with the driver's message.

usage: flight_sql_query.py grpc://HOST:PORT SQL [SQL ...]
       (grpc+tls://HOST:PORT with VERITRACE_TLS_ROOT_CERTS naming the CA's PEM file)

VERITRACE_FLIGHT_TOKEN sends `authorization: Bearer TOKEN` on every call;
VERITRACE_FLIGHT_BASIC=user:password makes the driver authenticate with a handshake first.
"""

import json
import os
import sys
import warnings

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql


def main() -> int:
    uri, statements = sys.argv[1], sys.argv[2:]
    results = []
    # The server has no transactions; ADBC warns that autocommit cannot be turned off.
    warnings.simplefilter("ignore")
    db_kwargs = {}
    roots = os.environ.get("VERITRACE_TLS_ROOT_CERTS")
    if roots:
        with open(roots, encoding="ascii") as f:
            db_kwargs[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = f.read()
    token = os.environ.get("VERITRACE_FLIGHT_TOKEN")
    if token:
        db_kwargs[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = (
            f"Bearer {token}"
        )
    basic = os.environ.get("VERITRACE_FLIGHT_BASIC")
    if basic:
        user, _, password = basic.partition(":")
        db_kwargs["username"] = user
        db_kwargs["password"] = password
    with flight_sql.connect(uri, db_kwargs=db_kwargs) as conn:
        cur = conn.cursor()
        for sql in statements:
            try:
                cur.execute(sql)
                table = cur.fetch_arrow_table()
                results.append({"columns": table.column_names, "rows": table.to_pylist()})
            except Exception as e:  # the error is the result, for refusal checks
                results.append({"error": f"{type(e).__name__}: {e}"})
        cur.close()
    json.dump({"results": results}, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
