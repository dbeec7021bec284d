"""``python -m serving.cli …``: the ``corridor`` command without its console script."""

from serving.cli import main

main()
