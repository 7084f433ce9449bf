"""``python -m pqike``: the same as the ``pqike`` command."""

from pqike.cli import main

if __name__ == "__main__":
    main()
