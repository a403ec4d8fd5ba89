"""`python -m localcloud`: run the local cloud until SIGINT or SIGTERM."""

from localcloud.cloud import main

raise SystemExit(main())
