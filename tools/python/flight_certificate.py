"""Asks a Veritrace Flight SQL server for a query certificate with the plain Arrow Flight
client of pyarrow (the `veritrace.certificate` action: body the SQL, result the certificate
JSON) and prints {"actions": [action types the server lists], "certificate": {...}}. Used by
the Flight SQL test (src/tests/flight.rs); any failure exits non-zero with the message.

usage: flight_certificate.py grpc://HOST:PORT SQL
"""

import json
import sys

import pyarrow.flight as flight


def main() -> int:
    uri, sql = sys.argv[1], sys.argv[2]
    client = flight.FlightClient(uri)
    actions = [a.type for a in client.list_actions()]
    results = list(client.do_action(flight.Action("veritrace.certificate", sql.encode())))
    if len(results) != 1:
        print(f"expected one result, got {len(results)}", file=sys.stderr)
        return 1
    certificate = json.loads(results[0].body.to_pybytes())
    json.dump({"actions": actions, "certificate": certificate}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
