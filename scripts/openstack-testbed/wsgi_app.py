"""WSGI entry for Keystone and Placement under gunicorn (test-bed only).

oslo.config parses ``sys.argv`` when the services initialise, and under
gunicorn that is gunicorn's own command line: it is reset here before the
application is imported. Select the service with AI4OS_WSGI_SERVICE; the
config file comes from OS_KEYSTONE_CONFIG_FILES / OS_PLACEMENT_CONFIG_DIR.
"""

import os
import sys

SERVICE = os.environ["AI4OS_WSGI_SERVICE"]
sys.argv = [SERVICE]

if SERVICE == "keystone":
    from keystone.server.wsgi import initialize_public_application

    application = initialize_public_application()
elif SERVICE == "placement":
    from placement.wsgi import init_application

    application = init_application()
else:
    raise SystemExit(f"unknown AI4OS_WSGI_SERVICE {SERVICE!r}")
