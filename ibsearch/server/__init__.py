"""``ibsearch serve``: an HTTP API over a library and a web page to search it and see the results.

The server is a top layer like the commands: it takes a :class:`~ibsearch.library.LibraryResources` and
talks to it only through the public API (``Searcher``, ``maintenance.info``, the store's reads).
``config`` (where it listens, who may use it), ``record`` (the ``server.json`` a running server
leaves in its library), ``client`` (the command line's fast path through a running server: no
torch), ``service`` (the library on a thread of its own, kept in step with other processes'
commits), ``models`` (the API's typed requests and responses), ``query`` and ``decoding``
(uploads: their limits, decoded off the library's thread), ``thumbnails``, ``security`` (Host,
token and size checks), ``routes``, ``responses`` (Range, errors as JSON) and ``app`` (the FastAPI
application), ``runner`` (uvicorn on a bound socket) and ``static/`` (the page, shipped with the
package).

Importing this package imports nothing heavy: the command line's fast path uses ``client`` alone.
"""
