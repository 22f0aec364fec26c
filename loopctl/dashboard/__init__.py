"""`loopctl dashboard`: a live campaign page in the browser.

:mod:`.data` reads the database (read-only connections only), :mod:`.liveness` tells
whether a controller runs without touching its lock, :mod:`.model_check` fits the
leave-one-out check in a worker thread, :mod:`.actions` turns a
page's operator action into the CLI's operator command, :mod:`.app` is the Starlette
application and :mod:`.server` runs it under uvicorn. The page's script and style are
package data in ``static/``: nothing is fetched from the internet.
"""
