"""moto_server, answering one request at a time.

moto checks a conditional write (If-None-Match: *, If-Match) and then stores the object in
two steps; its server runs each request on a thread of its own, so two racing conditional
writes can both pass the check and both "win", which S3 never allows. Veritrace's commit
points rely on exactly one winner, so the tests run moto with every request alone.

Usage: python moto_serial.py HOST PORT
"""

import os
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
alone = threading.Lock()


def one_at_a_time(environ, start_response):
    with alone:
        body = app(environ, start_response)
        try:
            data = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
    return [data]


run_simple(
    host,
    port,
    one_at_a_time,
    threaded=True,
    request_handler=MotoRequestHandler,
)
