"""``python -m ibsearch``: the same as the ``ibsearch`` command."""

from .cli import main

if __name__ == "__main__":
    main()
